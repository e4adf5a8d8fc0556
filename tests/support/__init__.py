"""What the tests share besides fixtures: the backend table, server processes, apps and clients to drive.

Imported as ``support.<module>`` (pytest puts ``tests/`` on ``sys.path``); fixtures live in the conftest files.
"""
