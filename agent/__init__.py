"""The STB agent: accept viewing and click events, spool them, publish them over MQTT.

    from agent.core import Agent          # asyncio: many agents per process
    from agent.thread import AgentThread  # firmware that is not asyncio
    python -m agent --help                # standalone, fed over a local socket

See docs/AGENT.md for the API, the socket format and the spool's guarantees.
"""
