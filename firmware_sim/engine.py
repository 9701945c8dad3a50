"""One broadcast day of a block of households, simulated in lock-step with numpy.

Every box (device) of the block advances one *decision* per step, all boxes at once: at a
decision the session's viewer chooses among what is on now on their channel repertoire, the
channel the box shows, and switching off (`choice.utility` + situational terms, softmax);
then how to get there (stay, zap up/down through the channels in between, type the number,
or use the guide — where recommendations may redirect them), and how long to watch (to the
programme's end, or a partial stretch, or to the session's end). The stretch being watched
is a *pending* view: it is emitted at the next decision, when its end reason is known.

Random numbers come from `rng` keyed by (seed, household, device, day, step, slot), and a
box's k-th decision always happens at step k, so a box's events do not depend on the block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
from scipy.special import expit

from firmware_sim import eventlog as ev
from firmware_sim import rng
from firmware_sim.choice import daypart_of, softmax, utility
from firmware_sim.households import REPERTOIRE
from firmware_sim.recs import position_bias
from firmware_sim.schedule import MINUTE_MS
from firmware_sim.sessions import Block, broadcast_day_start, day_sessions

if TYPE_CHECKING:
    from firmware_sim.behaviour import Simulator

POWER_ON, PROG_END, BORED, AFTER_VOD, SESSION_END, DONE = range(6)
_S: Final = 1000  # ms per second
_N_SLOTS: Final = 16


def _seconds(x: np.ndarray) -> np.ndarray:
    """Whole seconds, as ms."""
    return np.round(np.asarray(x, dtype=np.float64)).astype(np.int64) * _S


class DayRun:
    """State of every box of one block for one broadcast day."""

    def __init__(self, sim: Simulator, rows: np.ndarray, day: int) -> None:
        self.sim, self.day = sim, day
        hh, epg = sim.households, sim.epg
        self.block = Block.of(hh, rows)
        churn = sim.churn.day(self.block.rows, day)
        self.sess = day_sessions(hh, self.block, epg.start_ms, epg.end_ms, day, sim.seed,
                                 sim.premieres(day), churn)
        # An unhappy household's viewing in fragments (churn.py); float32 zeros elsewhere, so
        # every other box computes exactly what it did before churn existed.
        s_dev = np.repeat(churn.s, np.diff(self.block.dev_start)).astype(np.float32)
        cp = churn.params
        self.full_shift = np.float32(cp.full_drop) * s_dev
        self.partial_factor = np.float32(1.0) - np.float32(cp.partial_drop) * s_dev
        self.zap_gain = np.float32(cp.zap_gain) * s_dev
        self.t0 = broadcast_day_start(epg.start_ms, day)
        self.grid = sim.grid(day)
        dev_hh = self.block.dev_household
        n = len(dev_hh)
        self.kd = rng.key(rng.seed_key(sim.seed, rng.TAG_DEVICE_DAY), hh.household_id[dev_hh],
                          self.block.dev_k, day)
        self.pkg, self.region = hh.package[dev_hh].astype(np.int64), hh.region[dev_hh].astype(np.int64)
        s = self.sess
        self.si = s.first[:-1].copy()
        self.s_last = s.first[1:]
        has = self.s_last > self.si
        first = np.minimum(self.si, max(len(s.start_ms) - 1, 0))

        def first_of(a: np.ndarray) -> np.ndarray:
            return np.where(has, a[first], 0) if len(a) else np.zeros(n, dtype=np.int64)

        self.reason = np.where(has, POWER_ON, DONE).astype(np.int8)
        self.t, self.t_end, self.viewer = first_of(s.start_ms), first_of(s.end_ms), first_of(s.viewer)
        # The box wakes up on the channel it was left on yesterday: one of the viewer's home channels.
        second_home = rng.uniform(self.kd, 0xC0FFEE) > 0.7
        homes = hh.tastes.home[self.viewer]
        self.ch = np.where(second_home & (homes[:, 1] >= 0), homes[:, 1], homes[:, 0]).astype(np.int64)
        self.has_pv = np.zeros(n, dtype=bool)
        self.pv_start = np.zeros(n, dtype=np.int64)
        self.pv_ch = np.zeros(n, dtype=np.int64)
        self.pv_pid = np.zeros(n, dtype=np.int64)
        self.pv_stop = np.zeros(n, dtype=bool)
        self.log = ev.EventLog()

    def run(self) -> list[ev.DeviceEvents]:
        step = 0
        while self.step(step):
            step += 1
        return self.log.assemble(len(self.block.dev_household))

    # --- lookups ---------------------------------------------------------------------------

    def airing(self, ts: np.ndarray, ch: np.ndarray) -> np.ndarray:
        return self.grid[(ts - self.t0) // MINUTE_MS, ch].astype(np.int64)

    def channel_id(self, ch: np.ndarray) -> np.ndarray:
        return self.sim.epg.channel_ids[ch].astype(np.int64)

    def pid(self, air: np.ndarray) -> np.ndarray:
        return self.sim.epg.airings["programme_id"][air].astype(np.int64)

    def stop(self, air: np.ndarray) -> np.ndarray:
        return self.sim.epg.airings["stop_ms"][air]

    def view(self, rows: np.ndarray, step: int, order: int | np.ndarray, start: np.ndarray, ch: np.ndarray,
             pid: np.ndarray, end: np.ndarray, reason: int | np.ndarray) -> None:
        self.log.add(ev.VIEW, rows, step, order, start, end, self.channel_id(ch), pid, (end - start) // _S,
                     reason)

    def view_span(self, rows: np.ndarray, step: int, order: int | np.ndarray, start: np.ndarray,
                  end: np.ndarray, ch: np.ndarray, reason: int | np.ndarray) -> None:
        """A short stretch (under a minute) on `ch`: one view, or two if a programme ends inside."""
        a = self.airing(start, ch)
        stop = self.stop(a)
        first_end = np.minimum(end, stop)
        self.view(rows, step, order, start, ch, self.pid(a), first_end,
                  np.where(end >= stop, 2, reason))
        c = np.flatnonzero(end > stop)
        self.view(rows[c], step, _sub(order, c), stop[c], ch[c], self.pid(self.airing(stop[c], ch[c])),
                  end[c], _sub(reason, c))

    # --- one step --------------------------------------------------------------------------

    def step(self, s: int) -> bool:
        ix = np.flatnonzero(self.reason != DONE)
        if not len(ix):
            return False
        on = ix[self.reason[ix] == POWER_ON]
        self.log.add(ev.POWER, on, s, ev.O_POWER_ON, self.t[on], f1=1)
        forced = ix[self.reason[ix] == SESSION_END]
        dec = ix[self.reason[ix] != SESSION_END]
        off = self.decide(dec, s) if len(dec) else dec
        self.end_sessions(np.concatenate([forced, off]), s)
        return True

    def decide(self, rows: np.ndarray, s: int) -> np.ndarray:
        """Decisions at t: returns the rows that switch off now."""
        sim, hh, p = self.sim, self.sim.households, self.sim.params
        n = len(rows)
        m, tt, cur, rs = self.viewer[rows], self.t[rows], self.ch[rows], self.reason[rows]
        te = self.t_end[rows]
        u = rng.stream(rng.key(self.kd[rows], s), _N_SLOTS)
        rep = hh.repertoire[m].astype(np.int64)
        rep[rep == cur[:, None]] = -1
        cand = np.concatenate([rep, cur[:, None]], axis=1)
        air = np.where(cand >= 0, self.grid[((tt - self.t0) // MINUTE_MS)[:, None], np.maximum(cand, 0)], -1)
        dp = daypart_of(tt)
        util = utility(sim.model, sim.features, hh.tastes, m, air, dp)
        util[:, REPERTOIRE] += np.select([rs == PROG_END, rs == BORED], [sim.model.stay, -np.inf],
                                         sim.model.resume)
        outside = hh.outside[m] + p.outside_shift + np.where(rs == POWER_ON, p.power_on_outside, 0.0)
        full_u = np.concatenate([util, outside[:, None].astype(np.float32)], axis=1)
        choice = np.minimum((u[:, :1] > np.cumsum(softmax(full_u), axis=1)).sum(axis=1), REPERTOIRE + 1)
        too_short = te - tt < 90 * _S
        is_out = (choice == REPERTOIRE + 1) | too_short
        vod = is_out & ~too_short & (u[:, 1] < hh.vod[m]) & (te - tt > 20 * MINUTE_MS)
        target = np.where(is_out, -1, cand[np.arange(n), np.minimum(choice, REPERTOIRE)])
        best_u = full_u[np.arange(n), choice]

        has_pv = self.has_pv[rows]
        guide_p = np.where(target == cur, hh.guide[m] * p.guide_peek, hh.guide[m])
        guide = ~is_out & (u[:, 2] < guide_p)
        g_s = np.minimum(6 + np.round(-np.log(u[:, 3]) * 15), 60)
        g_s = np.where(has_pv, np.minimum(g_s, (tt - self.pv_start[rows]) // _S), g_s)
        lead_s = np.where(guide, g_s, np.minimum(3 + np.round(-np.log(u[:, 4]) * 8), 45))
        lead = np.where(has_pv, 0, _seconds(lead_s))
        t_sw = tt + lead
        open_ts = np.where(has_pv, tt - _seconds(g_s), tt)
        method = np.full(n, 2)
        if sim.rec_source is not None and guide.any():
            rec_target = self.recommendations(rows, s, np.flatnonzero(guide), open_ts, t_sw, best_u, u)
            redirected = (rec_target >= 0) & ~((rec_target == cur) & (rs == BORED))  # they are leaving it
            target = np.where(redirected, rec_target, target)
            method = np.where(redirected, 3, method)
        stay = ~is_out & (target == cur)
        switch = ~is_out & ~stay

        # The view that ended at t, and for boxes just switched on, what they showed first.
        pv = np.flatnonzero(has_pv & ~is_out)
        self.view(rows[pv], s, ev.O_PENDING_VIEW, self.pv_start[rows[pv]], self.pv_ch[rows[pv]],
                  self.pv_pid[rows[pv]], tt[pv], np.where(self.pv_stop[rows[pv]], 2, 0))
        land = np.flatnonzero(~has_pv & (switch | vod))
        self.view_span(rows[land], s, ev.O_LANDING_VIEW, tt[land], np.where(vod, tt + 5 * _S, t_sw)[land],
                       cur[land], 0)

        self.start_vod(rows, s, np.flatnonzero(vod), tt, u, has_pv)

        # Getting to the target: zapping, typing the number, or the guide's select.
        pos = sim.position[self.pkg[rows], self.region[rows]]
        dist = np.abs(pos[np.arange(n), np.maximum(target, 0)] - pos[np.arange(n), cur])
        zap = switch & ~guide & (dist <= p.zap_max) & (u[:, 5] < hh.zap[m] + self.zap_gain[rows]) \
            & (te - t_sw > 10 * MINUTE_MS)
        method = np.where(zap, 1, np.where(guide, method, 0))
        final_ch, final_t = target.copy(), t_sw.copy()
        direct = np.flatnonzero(switch & ~zap)
        self.log.add(ev.TUNE, rows[direct], s, ev.O_TUNES, t_sw[direct], f1=self.channel_id(cur[direct]),
                     f2=self.channel_id(target[direct]), f3=method[direct])
        z = np.flatnonzero(zap)
        if len(z):
            final_ch[z], final_t[z] = self.zap(rows[z], s, m[z], cur[z], target[z], t_sw[z], pos[z],
                                               util[z, np.minimum(choice[z], REPERTOIRE)], dp[z])
        w = np.flatnonzero(stay | switch)
        self.watch(rows[w], s, m[w], final_ch[w], final_t[w], u[w])
        self.guide_clicks(rows, s, guide, np.where(switch, method, -1), has_pv, tt, t_sw, g_s, target)
        return rows[is_out & ~vod]

    def guide_clicks(self, rows: np.ndarray, s: int, guide: np.ndarray, method: np.ndarray,
                     has_pv: np.ndarray, tt: np.ndarray, t_sw: np.ndarray, g_s: np.ndarray,
                     target: np.ndarray) -> None:
        """Guide use: open, maybe scroll, then select (a switch) or close (staying).

        With a view that just ended, the guide was open over its last seconds; on a box just
        switched on, it is open over the first view, and closes before that view ends.
        """
        switch = method >= 0
        g_s = np.where(has_pv | switch, g_s, np.minimum(g_s, (self.t[rows] - tt) // _S))
        open_ts = np.where(has_pv, tt - _seconds(g_s), tt)
        g = np.flatnonzero(guide)
        self.log.add(ev.EPG_CLICK, rows[g], s, ev.O_GUIDE_OPEN, open_ts[g], f1=ev.GUIDE_OPEN)
        sc = g[g_s[g] >= 12]
        self.log.add(ev.EPG_CLICK, rows[sc], s, ev.O_GUIDE_SCROLL, open_ts[sc] + _seconds(g_s[sc] / 2),
                     f1=ev.GUIDE_SCROLL)
        sel = g[method[g] == 2]  # a recommendation click (method 3) replaces the select
        pid = self.pid(self.airing(t_sw[sel], target[sel]))
        self.log.add(ev.EPG_CLICK, rows[sel], s, ev.O_GUIDE_END, t_sw[sel], f1=ev.GUIDE_SELECT, f2=pid)
        close = g[~switch[g]]
        close_ts = np.where(has_pv, tt, open_ts + _seconds(g_s))[close]
        self.log.add(ev.EPG_CLICK, rows[close], s, ev.O_GUIDE_END, close_ts, f1=ev.GUIDE_CLOSE)

    def zap(self, rows: np.ndarray, s: int, m: np.ndarray, cur: np.ndarray, target: np.ndarray,
            t_sw: np.ndarray, pos: np.ndarray, target_u: np.ndarray,
            dp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Up/down zapping through the channels between cur and target; may stop on the way.

        Returns the channel the viewer settles on and when they get there.
        """
        sim, p = self.sim, self.sim.params
        n = len(rows)
        ar = np.arange(n)
        p_cur, p_tgt = pos[ar, cur], pos[ar, target]
        direction = np.sign(p_tgt - p_cur)
        length = np.abs(p_tgt - p_cur) - 1          # channels passed through on the way
        chan_at = sim.chan_at[self.pkg[rows], self.region[rows]]
        first_hop = np.where(length > 0, chan_at[ar, p_cur + direction], target)
        self.log.add(ev.TUNE, rows, s, ev.O_TUNES, t_sw, f1=self.channel_id(cur),
                     f2=self.channel_id(first_hop), f3=1)
        final_ch, final_t = target.copy(), t_sw.copy()
        if not length.any():
            return final_ch, final_t
        grp = np.repeat(ar, length)
        offset = np.cumsum(length) - length
        j = np.arange(len(grp)) - offset[grp]
        ch_j = chan_at[grp, p_cur[grp] + direction[grp] * (j + 1)]
        uz = rng.stream(rng.key(self.kd[rows][grp], s, 1000 + j), 2)
        dur = _seconds(2 + np.minimum(np.round(-np.log(uz[:, 0]) * p.zap_view_s), 23))
        before = np.cumsum(dur) - dur
        t_j = t_sw[grp] + before - before[offset[grp]]
        a_j = self.airing(t_j, ch_j)
        u_j = utility(sim.model, sim.features, sim.households.tastes, m[grp], a_j[:, None], dp[grp])[:, 0]
        caught = (u_j >= target_u[grp] - p.catch_margin) & (uz[:, 1] < p.zap_catch)
        first_catch = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first_catch, grp[caught], j[caught])
        shown = np.flatnonzero(j < np.minimum(first_catch, length)[grp])
        nxt = np.where(j + 1 < length[grp], np.roll(ch_j, -1), target[grp])
        e = shown
        self.view_span(rows[grp[e]], s, ev.O_TUNES + 1 + 2 * j[e], t_j[e], (t_j + dur)[e], ch_j[e], 0)
        self.log.add(ev.TUNE, rows[grp[e]], s, ev.O_TUNES + 2 + 2 * j[e], (t_j + dur)[e],
                     f1=self.channel_id(ch_j[e]), f2=self.channel_id(nxt[e]), f3=1)
        settled = np.flatnonzero(j == first_catch[grp])
        final_ch[grp[settled]], final_t[grp[settled]] = ch_j[settled], t_j[settled]
        through = (first_catch >= length) & (length > 0)
        total = np.bincount(grp, dur, minlength=n).astype(np.int64)
        final_t[through] = t_sw[through] + total[through]
        return final_ch, final_t

    def watch(self, rows: np.ndarray, s: int, m: np.ndarray, ch: np.ndarray, tf: np.ndarray,
              u: np.ndarray) -> None:
        """Start watching `ch` at `tf`: decide how long; the stretch becomes the pending view."""
        sim, hh, p = self.sim, self.sim.households, self.sim.params
        a = self.airing(tf, ch)
        stop = self.stop(a)
        uf = utility(sim.model, sim.features, hh.tastes, m, a[:, None], daypart_of(tf))[:, 0]
        full = u[:, 6] < expit(p.full_bias + p.full_slope * uf - self.full_shift[rows])
        partial = _seconds(np.maximum(10, hh.partial_s[m] * self.partial_factor[rows] * np.exp(p.partial_slope * uf)
                                      * -np.log(u[:, 7])))
        end = np.where(full, stop, np.minimum(stop, tf + partial))
        te = self.t_end[rows]
        nxt_sess = self.si[rows] + 1
        nxt_start = np.where(nxt_sess < self.s_last[rows],
                             self.sess.start_ms[np.minimum(nxt_sess, len(self.sess.start_ms) - 1)],
                             np.iinfo(np.int64).max // 2)
        over = end >= te
        ext = over & (stop - te <= p.finish_max_s * _S) & (stop <= nxt_start - 180 * _S) & (uf > 0.5) \
            & (u[:, 8] < p.finish_p) & (stop <= sim.epg.end_ms - 120 * _S) \
            & (stop < self.t0 + 25 * 3600 * _S)
        te = np.where(ext, stop, te)
        end = np.where(over, te, end)
        self.t_end[rows] = te
        self.has_pv[rows] = True
        self.pv_start[rows], self.pv_ch[rows], self.pv_pid[rows] = tf, ch, self.pid(a)
        self.pv_stop[rows] = end == stop
        self.t[rows], self.ch[rows] = end, ch
        self.reason[rows] = np.where(end >= te, SESSION_END, np.where(end == stop, PROG_END, BORED))

    def start_vod(self, rows: np.ndarray, s: int, v: np.ndarray, tt: np.ndarray, u: np.ndarray,
                  has_pv: np.ndarray) -> None:
        if not len(v):
            return
        sim = self.sim
        r = rows[v]
        click = np.where(has_pv[v], np.maximum(tt[v] - 5 * _S, self.pv_start[r]), tt[v])
        self.log.add(ev.EPG_CLICK, r, s, ev.O_GUIDE_OPEN, click, f1=ev.VOD_OPEN)
        start = np.where(has_pv[v], tt[v], tt[v] + 5 * _S)
        films = sim.vod_assets
        asset = films[np.minimum((u[v, 9] * len(films)).astype(np.int64), len(films) - 1)]
        runtime = np.array([sim.epg.contents[k].runtime_minutes * 60 for k in asset.tolist()], dtype=np.int64)
        watched = np.minimum(_seconds(runtime * (0.3 + 0.7 * u[v, 10])), self.t_end[r] - start - 60 * _S)
        watched = np.maximum(watched, 60 * _S)
        self.log.add(ev.VOD_PLAY, r, s, ev.O_VOD, start, start + watched,
                     f1=sim.epg.content_ids[asset].astype(np.int64), f2=0, f3=watched // _S)
        self.has_pv[r] = False
        self.t[r] = start + watched
        self.reason[r] = np.where(self.t[r] >= self.t_end[r] - 60 * _S, SESSION_END, AFTER_VOD)

    def end_sessions(self, rows: np.ndarray, s: int) -> None:
        if not len(rows):
            return
        tt = self.t[rows]
        pv = rows[self.has_pv[rows]]
        self.view(pv, s, ev.O_PENDING_VIEW, self.pv_start[pv], self.pv_ch[pv], self.pv_pid[pv], self.t[pv],
                  np.where(self.pv_stop[pv], 2, 1))
        u = rng.stream(rng.key(self.kd[rows], s, 77), 2)
        tail = ~self.has_pv[rows] | self.pv_stop[rows]
        a = self.airing(tt, self.ch[rows])
        t_off = np.where(tail, np.minimum(tt + _seconds(np.minimum(3 + np.round(-np.log(u[:, 0]) * 10), 55)),
                                          self.stop(a)), tt)
        tl = np.flatnonzero(tail)
        self.view(rows[tl], s, ev.O_LANDING_VIEW, tt[tl], self.ch[rows[tl]], self.pid(a[tl]), t_off[tl], 1)
        state = np.where(u[:, 1] < self.sim.params.off_p, 0, 2)
        self.log.add(ev.POWER, rows, s, ev.O_POWER_OFF, t_off, f1=state)
        self.has_pv[rows] = False
        nxt = self.si[rows] + 1
        more = nxt < self.s_last[rows]
        k = np.minimum(nxt, max(len(self.sess.start_ms) - 1, 0))
        self.si[rows] = nxt
        if len(self.sess.start_ms):
            self.t[rows] = np.where(more, np.maximum(self.sess.start_ms[k], t_off + 60 * _S), tt)
            self.t_end[rows] = np.where(more, self.sess.end_ms[k], self.t_end[rows])
            self.viewer[rows] = np.where(more, self.sess.viewer[k], self.viewer[rows])
        self.reason[rows] = np.where(more, POWER_ON, DONE)

    def recommendations(self, rows: np.ndarray, s: int, g: np.ndarray, open_ts: np.ndarray,
                        t_sw: np.ndarray, best_u: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Ask the source at each guide opening; log impressions and clicks; return redirects.

        One call to the source per opening; the member's reaction is computed for all items of
        the step at once.
        """
        sim, hh, p = self.sim, self.sim.households, self.sim.params
        source = sim.rec_source
        assert source is not None
        out = np.full(len(rows), -1, dtype=np.int64)
        opening: list[int] = []   # per item: index into rows
        ranks: list[int] = []
        items: list[tuple[int, int, int]] = []
        request: dict[int, str] = {}
        for i in g.tolist():
            r, at = int(rows[i]), int(open_ts[i])
            recs = source.recommend(int(hh.household_id[self.block.dev_household[r]]), at, p.rec_k)
            shown = [(int(a), int(b), int(c)) for a, b, c in list(recs.items)[: p.rec_k]]
            request[i] = recs.request_id
            for n, item in enumerate(shown, 1):
                impression = [6, at, recs.request_id, recs.model_version, item[0], n]
                self.log.add_prebuilt(r, s, ev.O_REC, impression, at)
            opening += [i] * len(shown)
            ranks += range(1, len(shown) + 1)
            items += shown
        if not items:
            return out
        i_of = np.array(opening, dtype=np.int64)
        rank = np.array(ranks, dtype=np.int64)
        air = sim.epg.find_airings(np.array(items, dtype=np.int64))
        a = sim.epg.airings
        when = np.maximum(np.where(air >= 0, a["start_ms"][np.maximum(air, 0)], 0), open_ts[i_of])
        iu = utility(sim.model, sim.features, hh.tastes, self.viewer[rows[i_of]], air[:, None],
                     daypart_of(when))[:, 0]
        pc = position_bias(rank) * expit(p.click_bias + p.click_slope * (iu - best_u[i_of]))
        click = (rng.uniform(self.kd[rows[i_of]], s, 2000 + rank) < pc) & (air >= 0)
        first = np.full(len(rows), np.iinfo(np.int64).max)
        np.minimum.at(first, i_of[click], rank[click])
        for j in np.flatnonzero(click & (rank == first[i_of])).tolist():
            i, r, k = int(i_of[j]), int(rows[i_of[j]]), int(air[j])
            pid = items[j][0]
            click_ts = min(int(open_ts[i]) + 1 * _S, int(t_sw[i]))
            self.log.add_prebuilt(r, s, ev.O_REC + 28, [7, click_ts, request[i], pid, int(rank[j])], click_ts)
            ch = int(a["channel_idx"][k])
            on_now = a["start_ms"][k] <= t_sw[i] < a["stop_ms"][k]
            entitled = sim.position[self.pkg[r], self.region[r], ch] >= 0
            if on_now and entitled and u[i, 11] < p.tune_after_click:
                out[i] = ch
            elif a["start_ms"][k] > t_sw[i]:  # later today: set a reminder (ended already: nothing)
                remind = [ev.EPG_CLICK, click_ts, "rec", "remind", pid]
                self.log.add_prebuilt(r, s, ev.O_REC + 29, remind, click_ts)
        return out


def _sub(x: int | np.ndarray, rows: np.ndarray) -> int | np.ndarray:
    return np.asarray(x)[rows] if np.ndim(x) else x
