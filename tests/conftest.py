"""Test-session settings. Under pytest-xdist (the README's ``-n 2``: one worker per core) each
worker runs torch on one thread, so that two workers do not share two cores four ways."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
