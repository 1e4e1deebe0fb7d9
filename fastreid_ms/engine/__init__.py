from .defaults import default_argument_parser, default_setup, setup_cfg
