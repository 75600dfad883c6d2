"""CRC32C (Castagnoli), the file channel's record checksum: crc32c.crc32c, taken from the
crc32c package's extension without running the package's __init__, which imports
importlib.metadata (and with it email, zipfile, csv, tempfile...: ~2.9 MB resident, ~30 ms
of a file channel's start-up) only to set __version__. The WAL's native code and its
Python side both take it from here."""
import importlib.machinery
import importlib.util
import os


def _load():
    spec = importlib.util.find_spec("crc32c")        # finds the package, does not run it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_crc32c" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
                loader.exec_module(module)
                return module.crc32c
    from crc32c import crc32c       # laid out otherwise: the ordinary import
    return crc32c


crc32c = _load()
