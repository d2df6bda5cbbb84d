"""The benchmark harness: this project against plain python-socketio and Node's socket.io.

``run.py`` parses the command line and calls the rest:

- :mod:`bench.processes`: starting, measuring (``/proc``) and stopping OS processes
- :mod:`bench.servers`: the servers under test (and Redis), one fresh process tree per scenario
- :mod:`bench.loadgen`: the driver of the load generator, ``loadgen.js``
- :mod:`bench.scenarios`: one module per scenario (or family of scenarios)
- :mod:`bench.report`: the figures, their tables and ``results.md``; :mod:`bench.plot` draws them
"""
