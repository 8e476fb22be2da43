"""People: sign-in and roles, overlap and blindness, review queues, agreement, consensus, auto-accept
and team statistics.

The human side of the loop. May import ``labeling.project`` and ``storage``.
"""
