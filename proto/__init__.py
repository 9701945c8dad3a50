"""Contracts shared by the agent, the collector and the recommender.

`proto.telemetry` is the telemetry wire format v1 (see TELEMETRY.md beside it);
`recommender.proto` is the gRPC contract with the EPG.
"""
