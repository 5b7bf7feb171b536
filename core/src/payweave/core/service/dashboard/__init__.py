"""The partner dashboard (``/ui``): server-rendered pages for the person who runs the integration.

See :mod:`payweave.core.service.dashboard.routes` for the pages and
:mod:`payweave.core.service.dashboard.session` for login, sessions and CSRF.
"""
