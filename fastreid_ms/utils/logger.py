"""Rank-aware logging: rank 0 logs to the console and OUTPUT_DIR/log.txt; other ranks
only print warnings and errors to the console and write no file."""
import logging
import os
import sys

LOGGER_NAME = "fastreid_ms"
_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def setup_logger(output_dir: str = None, distributed_rank: int = 0,
                 name: str = LOGGER_NAME) -> logging.Logger:
    """Configure and return the ``name`` logger.

    Calling it again (a second run in the same process, tests) replaces the handlers
    instead of adding duplicates.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()

    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    console = logging.StreamHandler(stream=sys.stdout)
    console.setLevel(logging.INFO if distributed_rank == 0 else logging.WARNING)
    console.setFormatter(formatter)
    logger.addHandler(console)

    if output_dir and distributed_rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(output_dir, "log.txt"), mode="a",
                                           encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
    """The toolbox logger (or a child of it: ``get_logger('fastreid_ms.data')``)."""
    return logging.getLogger(name)
