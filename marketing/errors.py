"""The marketing exception tree.

    MarketingError                 root; `retryable` says whether trying again may help
    +-- CampaignError              a campaign file or command is wrong (fields: campaign, key)
    +-- UnknownCampaign            no campaign with that id
    +-- PublishError               the broker refused or could not be reached (retryable)
        +-- PublishIncomplete      gave up waiting; carries each message's PUBACK code (-1: none)
"""

from __future__ import annotations


class MarketingError(Exception):
    retryable = False


class CampaignError(MarketingError):
    def __init__(self, message: str, *, campaign: str = "", key: str = "") -> None:
        super().__init__(message)
        self.campaign = campaign
        self.key = key


class UnknownCampaign(MarketingError):
    def __init__(self, campaign: str) -> None:
        super().__init__(f"no campaign {campaign!r}")
        self.campaign = campaign


class PublishError(MarketingError):
    retryable = True
