"""Sources, one module each; a module is imported (and registers its source) when a config
uses it: see fastsync.agent.component.Registry."""
