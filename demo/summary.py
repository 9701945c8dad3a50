"""The demo's first look at the store: what was collected, by channel, programme, daypart and kind."""

from __future__ import annotations

# title -> query; its column names are the table's headings (hours of viewing, households that watched)
SUMMARY_QUERIES = {
    "Top channels by watch time": """
        SELECT c.name AS channel, round(sum(e.duration_s) / 3600, 1) AS hours, uniqExact(e.household_id) AS households
        FROM (SELECT channel_id, duration_s, household_id FROM {db}.events FINAL WHERE kind = 'view') AS e
        ANY LEFT JOIN (SELECT channel_id, name FROM {db}.channels FINAL) AS c USING channel_id
        GROUP BY channel ORDER BY hours DESC LIMIT 5""",
    "Top programmes by watch time": """
        SELECT p.title AS programme, round(sum(e.duration_s) / 3600, 1) AS hours,
               uniqExact(e.household_id) AS households
        FROM (SELECT programme_id, duration_s, household_id FROM {db}.events FINAL
              WHERE kind = 'view' AND programme_id != 0) AS e
        ANY INNER JOIN (SELECT programme_id, content_id, title FROM {db}.programmes FINAL) AS p USING programme_id
        GROUP BY programme ORDER BY hours DESC LIMIT 5""",
    "Viewing by daypart (UTC)": """
        SELECT multiIf(h < 6, '1 night 00-06', h < 12, '2 morning 06-12', h < 17, '3 daytime 12-17',
                       h < 19, '4 early evening 17-19', h < 23, '5 prime time 19-23', '6 late 23-24') AS daypart,
               round(sum(duration_s) / 3600, 1) AS hours
        FROM (SELECT toHour(time) AS h, duration_s FROM {db}.events FINAL WHERE kind = 'view')
        GROUP BY daypart ORDER BY daypart""",
    "Events by kind": "SELECT kind, count() AS events FROM {db}.events FINAL GROUP BY kind ORDER BY events DESC",
}


def print_summary(store_url: str) -> None:
    from warehouse import open_warehouse

    wh = open_warehouse(store_url)
    try:
        total = wh.query_rows(f"SELECT count(), uniqExact(household_id), uniqExact(device_id) "
                              f"FROM {wh.database}.events FINAL")[0]
        print(f"\n== stored: {total[0]:,} events from {total[1]:,} households, {total[2]:,} boxes")
        for title, sql in SUMMARY_QUERIES.items():
            columns = wh.query_columns(sql.format(db=wh.database))
            print(f"\n== {title}")
            print("   " + "  ".join(f"{h:<34}" if i == 0 else f"{h:>10}" for i, h in enumerate(columns)))
            for row in zip(*(c.tolist() for c in columns.values()), strict=True):
                print("   " + "  ".join(f"{v:>10,}" if isinstance(v, int | float) and not isinstance(v, bool)
                                        else f"{v!s:<34}" for v in row))
    finally:
        wh.close()
