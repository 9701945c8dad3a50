"""How household ids leave the CRM's commands: keyed pseudonyms by default, raw ids on request.

A command that lists households (`segment members`, the riskiest households of `churn score`)
writes `stbcommon.pseudonym` pseudonyms when `[privacy] key_file` is set, and the raw ids only
with `--identified` (an operator with personal-data rights). Without a key and without
`--identified` it refuses to list ids.
"""

from __future__ import annotations

from collections.abc import Callable

from crm.errors import CrmError
from crm.settings import PrivacySettings
from stbcommon.pseudonym import Pseudonymizer, PseudonymKeyError

IDENTIFIED_HELP = "print raw household ids (personal data; default: keyed pseudonyms, [privacy] key_file)"


class IdsRefused(CrmError):
    """Household ids were to be written without a pseudonym key and without --identified,
    or the key file cannot be used."""


def household_labeller(privacy: PrivacySettings, identified: bool) -> Callable[[int], str]:
    """The function that turns a household id into what the command prints."""
    if identified:
        return str
    if not privacy.key_file:
        raise IdsRefused("household ids are personal data: set [privacy] key_file (STB_CRM__PRIVACY__KEY_FILE) "
                         "to list keyed pseudonyms, or pass --identified if you may see ids")
    try:
        return Pseudonymizer.from_file(privacy.key_file)
    except PseudonymKeyError as exc:
        raise IdsRefused(str(exc)) from None
