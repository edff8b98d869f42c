"""crystaloop.loop: the campaign engine (config, guards, strategies, iteration, reports).

Entry points: :func:`crystaloop.loop.config.load_campaign_config`,
:func:`crystaloop.loop.components.build_components`, :func:`crystaloop.loop.campaign.run_iteration`
and :func:`crystaloop.loop.campaign.run_campaign`. Importing this package loads nothing heavy.
"""
