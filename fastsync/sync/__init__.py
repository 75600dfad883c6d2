"""`fastsync sync SRC DST`: rsync's everyday job between local paths and filesystem URLs.

    filters.py   rsync's include/exclude rules
    local.py     entries, temporary names, the local disk (os, no pyarrow)
    arrowtree.py any other filesystem, through pyarrow
    copy.py      moving bytes: copy_file_range with holes kept and parallel ranges, or streams
    procs.py     many small local files copied by forked worker processes
    engine.py    listing, deciding, copying in parallel, deleting, directory attributes
    report.py    counters, messages, the summary line, rsync's exit codes
    command.py   the command line's flags

Only command.py is imported by the command line's parser; the rest (and pyarrow) when a sync runs.
"""
