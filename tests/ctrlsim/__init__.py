"""ctrlsim: a simulator of an OpenZiti controller cluster in HA (raft) mode.

Python standard library only.  Behaviour is pinned to openziti/ziti v1.5.4;
every behaviour carries a comment naming the source file/function it follows.
Start it with ``python3 -m tests.ctrlsim --help`` from the repository root.
"""

ZITI_VERSION = "v1.5.4"
