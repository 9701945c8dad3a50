"""Precision marketing through the set-top box (docs/MARKETING.md).

Campaigns (`campaign.py`, the TOML file of ../shared/CONTRACTS.md) name a segment, content
variants, waves and a schedule or trigger. Each cycle of the daemon (`engine.py`):

    occasions (schedule / trigger)  ->  audience (crm segments, holdout)  ->  eligibility (contact
    states, waves, unsubscribes)    ->  caps (`caps.py`)  ->  variants (`allocation.py`, Thompson)
    ->  messages (`downlink.py`)    ->  broker (`publisher.py`, MQTT 5 QoS 1 with expiry)
    ->  deliveries / contacts rows  ->  states from the boxes' answers (`states.py`)

`report.py` measures a campaign against its holdout (`uplift.py`). Modules:

    campaign.py    the campaign file: parse and validate
    settings.py    the daemon's settings tree
    errors.py      the exception tree
    holdout.py     stable per-campaign holdout assignment
    caps.py        frequency caps and quiet hours
    allocation.py  Thompson sampling of variants, with an exploration floor
    uplift.py      treated vs holdout: rates, uplift and its 95 % interval
    downlink.py    message payloads, topics and message ids
    mqtt_settings.py  the [mqtt] settings section
    mqtt_link.py   one MQTT 5 connection on the mqtt5 codec (TLS, PUBACK reading)
    publisher.py   a fast MQTT 5 QoS 1 publisher that waits for every PUBACK
    store.py       the campaign registry (shared with the console)
    audience.py    segment, consent, unsubscribes, each household's box
    daemon.py      `run`: cycles, metrics, graceful shutdown
    triggers.py    occasions from schedules, the guide, churn alerts, behaviour, birthdays
    states.py      contact states from ingested msg_shown / msg_response events and the extract
    engine.py      one cycle
    report.py      the campaign report
    cli.py         `python -m marketing`
"""
