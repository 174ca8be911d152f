"""`teleconsult` as the browser tests start it: the same command line, with passwords hashed by
real Argon2id at minimal cost, as tests/conftest.py does for the servers inside pytest (the
production profile costs ~0.3 s a hash on a busy 2-core machine, and every test's world signs
in a dozen people). The installed console script is what the README runs; its start is tested
by tests/web/test_reverse_proxy.py and the README check."""

import sys

from argon2 import PasswordHasher

import consult.passwords
from web.cli import main

consult.passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
sys.exit(main())
