"""The simulated market's vocabulary: genres, channel line-up, packages and day templates.

Everything here is data. `schedule.py` turns the templates into contents and airings;
`households.py` draws tastes over `GENRES`. All times are UTC: the simulated market's
local time is UTC, so "prime time 19-23" is 19:00-23:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Content genres (the XMLTV <category>, the recommender's "genre" feature).
GENRES: Final = ("News", "Drama", "Comedy", "Entertainment", "Film", "Sport", "Children",
                 "Documentary", "Music", "Lifestyle", "Regional")
G: Final = len(GENRES)
GENRE_INDEX: Final = {name: i for i, name in enumerate(GENRES)}
NEWS, DRAMA, COMEDY, ENTERTAINMENT, FILM, SPORT, KIDS, DOC, MUSIC, LIFESTYLE, REGIONAL = range(G)

REGIONS: Final = ("north", "south", "east", "west")  # valid MQTT topic regions

# Channel tiers and the packages (sets of tiers) households subscribe to.
TIERS: Final = ("basic", "plus", "sports", "films")
PACKAGES: Final = {"basic": ("basic",), "plus": ("basic", "plus"),
                   "sports": ("basic", "plus", "sports"), "films": ("basic", "plus", "films"),
                   "full": TIERS}
PACKAGE_NAMES: Final = tuple(PACKAGES)
PACKAGE_SHARE: Final = (0.36, 0.30, 0.14, 0.10, 0.10)  # before taste adjustments


@dataclass(frozen=True, slots=True)
class ChannelGenre:
    name: str
    lcn_base: int          # logical channel numbers of this genre start here (101, 201, ...)
    share: float           # share of the line-up
    tiers: tuple[str, ...] # tier of the 1st, 2nd, ... channel of this genre (last one repeats)
    brands: tuple[str, ...]


CHANNEL_GENRES: Final = (
    ChannelGenre("general", 101, 0.26, ("basic", "basic", "basic", "basic", "plus", "basic", "plus"),
                 ("Vista", "Orbit", "Metro", "Beacon", "Summit", "Harbour", "Crown", "Atlas", "Nova",
                  "Pioneer", "Meridian", "Lumen", "Quartz", "Solstice", "Tidal", "Granite")),
    ChannelGenre("news", 201, 0.08, ("basic",), ("Newsline", "Headline", "Dispatch", "Courier", "Ledger")),
    ChannelGenre("sport", 301, 0.12, ("basic", "sports"),
                 ("Arena", "Stadium", "Podium", "Velocity", "Fairway", "Touchline")),
    ChannelGenre("kids", 401, 0.09, ("basic", "plus", "basic", "plus"),
                 ("Tumble", "Popcorn", "Kite", "Doodle", "Pebble", "Rocket")),
    ChannelGenre("films", 501, 0.13, ("plus", "films"),
                 ("Cinema", "Reel", "Marquee", "Silver Screen", "Projector", "Matinee")),
    ChannelGenre("documentary", 601, 0.10, ("plus", "basic", "plus"),
                 ("Discovery Lane", "Planet", "Origins", "Horizon", "Frontier", "Curious")),
    ChannelGenre("music", 701, 0.07, ("basic", "plus"), ("Groove", "Amp", "Encore", "Riff", "Tempo")),
    ChannelGenre("regional", 801, 0.0, ("basic",), ()),  # one per region, always
    ChannelGenre("lifestyle", 901, 0.08, ("plus", "basic", "plus"),
                 ("Hearth", "Pantry", "Wander", "Bloom", "Atelier")),
)
CHANNEL_GENRE_INDEX: Final = {cg.name: i for i, cg in enumerate(CHANNEL_GENRES)}
SIZES: Final = {"small": 40, "medium": 80, "large": 120}

# Day templates: (start hour, end hour, rule, genres "A|B" (weights equal), slot minutes).
# Rules:
#   strip     one content per slot, a new episode every weekday (soaps, quizzes, talk shows)
#   weekly    one content per slot per weekday, a new episode each week ("film" in genres: the
#             whole block becomes a film slot that day)
#   bulletin  the channel's brand for that genre, a new programme at every airing (news)
#   live      a live event (new programme) with probability 0.6, otherwise a repeat
#   repeat    an earlier episode of one of the channel's contents
#   films     films back to back, the remainder filled with repeats
Block = tuple[float, float, str, str, int]

TEMPLATES: Final[dict[str, dict[str, tuple[Block, ...]]]] = {
    "general": {
        "weekday": (
            (0, 6, "repeat", "", 60), (6, 9, "strip", "News", 180),
            (9, 11, "strip", "Entertainment|Lifestyle", 60), (11, 12, "repeat", "", 60),
            (12, 12.5, "bulletin", "News", 30), (12.5, 16, "repeat", "", 30),
            (16, 17, "strip", "Entertainment", 60), (17, 18, "repeat", "", 60),
            (18, 18.5, "bulletin", "News", 30), (18.5, 19.5, "strip", "Drama|Entertainment", 30),
            (19.5, 20, "weekly", "Comedy|Entertainment", 30),
            (20, 21, "weekly", "Drama|Entertainment|Documentary|Comedy", 60),
            (21, 23, "weekly", "Drama|Comedy|Drama|Film", 60),
            (23, 23.5, "bulletin", "News", 30), (23.5, 24, "strip", "Entertainment|Comedy", 30),
        ),
        "weekend": (
            (0, 6, "repeat", "", 60), (6, 9, "weekly", "Children|Entertainment", 60),
            (9, 12, "repeat", "", 60), (12, 14, "weekly", "Film", 120), (14, 16, "repeat", "", 60),
            (16, 18, "weekly", "Entertainment|Sport", 60), (18, 18.5, "bulletin", "News", 30),
            (18.5, 19, "repeat", "", 30), (19, 21, "weekly", "Entertainment|Drama|Comedy", 60),
            (21, 23, "weekly", "Film|Drama", 60), (23, 23.5, "bulletin", "News", 30),
            (23.5, 24, "repeat", "", 30),
        ),
    },
    "news": {
        "weekday": ((0, 20, "bulletin", "News", 30), (20, 21, "weekly", "Documentary|News", 60),
                    (21, 24, "bulletin", "News", 30)),
        "weekend": ((0, 24, "bulletin", "News", 30),),
    },
    "sport": {
        "weekday": ((0, 6, "repeat", "", 120), (6, 12, "bulletin", "Sport", 60), (12, 18, "repeat", "", 120),
                    (18, 19, "strip", "Sport", 60), (19, 23, "live", "Sport", 120),
                    (23, 24, "bulletin", "Sport", 60)),
        "weekend": ((0, 6, "repeat", "", 120), (6, 10, "bulletin", "Sport", 60),
                    (10, 12, "weekly", "Sport", 60), (12, 24, "live", "Sport", 120)),
    },
    "kids": {
        "weekday": ((0, 6, "repeat", "", 30), (6, 9, "strip", "Children", 30), (9, 15, "repeat", "", 30),
                    (15, 19, "strip", "Children", 30), (19, 20, "weekly", "Children", 30),
                    (20, 24, "repeat", "", 30)),
        "weekend": ((0, 6, "repeat", "", 30), (6, 12, "weekly", "Children", 30), (12, 16, "repeat", "", 30),
                    (16, 19, "weekly", "Children", 30), (19, 24, "repeat", "", 30)),
    },
    "films": {
        "weekday": ((0, 24, "films", "Film", 120),),
        "weekend": ((0, 24, "films", "Film", 120),),
    },
    "documentary": {
        "weekday": ((0, 9, "repeat", "", 60), (9, 12, "strip", "Documentary", 60), (12, 18, "repeat", "", 60),
                    (18, 19, "strip", "Documentary", 60), (19, 23, "weekly", "Documentary", 60),
                    (23, 24, "repeat", "", 60)),
        "weekend": ((0, 10, "repeat", "", 60), (10, 14, "weekly", "Documentary", 60),
                    (14, 19, "repeat", "", 60), (19, 23, "weekly", "Documentary", 60),
                    (23, 24, "repeat", "", 60)),
    },
    "music": {
        "weekday": ((0, 6, "repeat", "", 60), (6, 10, "bulletin", "Music", 60), (10, 16, "repeat", "", 60),
                    (16, 19, "strip", "Music", 60), (19, 23, "weekly", "Music", 60),
                    (23, 24, "bulletin", "Music", 60)),
        "weekend": ((0, 8, "repeat", "", 60), (8, 12, "bulletin", "Music", 60), (12, 19, "repeat", "", 60),
                    (19, 23, "weekly", "Music", 60), (23, 24, "repeat", "", 60)),
    },
    "regional": {
        "weekday": ((0, 6, "repeat", "", 60), (6, 9, "strip", "Regional", 180), (9, 12, "repeat", "", 60),
                    (12, 12.5, "bulletin", "Regional", 30), (12.5, 18, "repeat", "", 30),
                    (18, 18.5, "bulletin", "Regional", 30), (18.5, 19, "strip", "Regional", 30),
                    (19, 22, "weekly", "Regional|Documentary|Lifestyle", 60),
                    (22, 22.5, "bulletin", "Regional", 30), (22.5, 24, "repeat", "", 30)),
        "weekend": ((0, 8, "repeat", "", 60), (8, 12, "weekly", "Regional|Lifestyle", 60),
                    (12, 18, "repeat", "", 60), (18, 18.5, "bulletin", "Regional", 30),
                    (18.5, 19, "repeat", "", 30), (19, 22, "weekly", "Regional|Documentary", 60),
                    (22, 24, "repeat", "", 60)),
    },
    "lifestyle": {
        "weekday": ((0, 6, "repeat", "", 60), (6, 9, "repeat", "", 30), (9, 13, "strip", "Lifestyle", 60),
                    (13, 17, "repeat", "", 60), (17, 19, "strip", "Lifestyle", 30),
                    (19, 23, "weekly", "Lifestyle|Entertainment", 60), (23, 24, "repeat", "", 60)),
        "weekend": ((0, 8, "repeat", "", 60), (8, 12, "weekly", "Lifestyle", 60), (12, 19, "repeat", "", 60),
                    (19, 23, "weekly", "Lifestyle|Entertainment", 60), (23, 24, "repeat", "", 60)),
    },
}

# Genres of the back-catalogue ("archive") series each channel genre repeats.
ARCHIVE_GENRES: Final = {
    "general": "Drama|Comedy|Entertainment", "news": "News", "sport": "Sport", "kids": "Children",
    "films": "Entertainment", "documentary": "Documentary", "music": "Music",
    "regional": "Regional|Lifestyle", "lifestyle": "Lifestyle",
}

# Episodes per season, by genre (0: no season/episode numbering).
EPISODES_PER_SEASON: Final = {"News": 0, "Drama": 10, "Comedy": 13, "Entertainment": 20, "Film": 0,
                              "Sport": 0, "Children": 26, "Documentary": 8, "Music": 40, "Lifestyle": 20,
                              "Regional": 30}

# --- names -----------------------------------------------------------------------------------

ADJECTIVES: Final = (
    "Silent", "Crimson", "Golden", "Hidden", "Broken", "Northern", "Electric", "Wild", "Last", "Midnight",
    "Secret", "Burning", "Distant", "Lucky", "Frozen", "Restless", "Brave", "Hollow", "Paper", "Velvet",
    "Iron", "Glass", "Scarlet", "Quiet", "Savage", "Gentle", "Lost", "Rising", "Falling", "Bright",
)
NOUNS: Final = (
    "Harbour", "Street", "Kingdom", "River", "Garden", "Station", "Empire", "Island", "Frontier", "Code",
    "Valley", "Hospital", "Precinct", "Academy", "Dynasty", "Signal", "Horizon", "Orchard", "Canal", "Summit",
    "Lighthouse", "Circuit", "Ranch", "Bakery", "Embassy", "Theatre", "Bridge", "Forest", "Mansion", "Tower",
)
KIDS_HEROES: Final = ("Otter", "Penguin", "Robot", "Dragon", "Pirate", "Fox", "Panda", "Rocket", "Bunny",
                      "Monster", "Dino", "Kitten", "Owl", "Badger", "Wizard", "Koala")
TOWNS: Final = ("Ashford", "Brampton", "Carlow", "Dunmore", "Elmsworth", "Fernley", "Glenrock", "Holloway",
                "Ironbridge", "Kelby", "Larkhill", "Marston", "Northam", "Oakridge", "Penrith", "Redcliff")
FOOTBALL: Final = "Football"   # the sport planted fans follow (households.py)
SPORTS: Final = ("Football", "Rugby", "Tennis", "Cricket", "Basketball", "Cycling", "Golf", "Motor Racing",
                 "Boxing", "Athletics", "Ice Hockey", "Darts")
LEAGUES: Final = ("Premier", "National", "Champions", "Continental", "Grand", "Elite", "World", "Open")
SHOW_WORDS: Final = {
    "News": ("Breakfast", "Today", "Live", "Update", "Report", "Review", "Tonight", "Morning"),
    "Entertainment": ("Big Quiz", "Talent Show", "Late Show", "Game Night", "Chat Show", "Challenge"),
    "Lifestyle": ("Kitchen", "Home Rescue", "Garden Club", "Bake Off", "Makeover", "Road Trip"),
    "Documentary": ("Wild Earth", "Deep Ocean", "Ancient Worlds", "Great Engineering", "Secret Lives",
                    "Untold History"),
    "Music": ("Hits", "Countdown", "Unplugged", "Live Sessions", "Classics", "Charts"),
    "Regional": ("Tonight", "Matters", "Magazine", "Outdoors", "Heritage", "People"),
    "Sport": ("Centre", "Extra", "Review", "Show", "Weekly", "Tonight"),
}
