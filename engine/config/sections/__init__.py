"""Config sections, one module per subsystem, composed by `engine.config.model.HotcoinConfig`.

Every field carries a description: `hotcoin config show --doc` prints them, and they are the
documentation of record for each setting.
"""
