"""``storybot web``: the web archive, where anyone reads the stories a channel published.

One aiohttp server (the product's one HTTP stack, as Slack's HTTP mode) over the configured
database: ``bot.library`` decides what may be shown and to whom, ``adapters.web.app`` routes and
answers, ``adapters.web.pages`` renders the Jinja2 templates; ``/healthz`` and ``/metrics`` are
``adapters.web.ops``'s, as on every server of the product. It runs beside the bot processes
(no SQLite process lock, no generation queue, no model) and only reads, but for the search
index it keeps (``storage.search``) and the share-link secret it may make on first start.

Only this docstring here: every bot process imports ``adapters.web.ops`` (``/healthz``,
``/metrics``), which must not pull in Jinja2 and the archive; ``storybot web`` runs
``adapters.web.server``.
"""
