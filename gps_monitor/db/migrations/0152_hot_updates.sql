-- Room on each page for HOT updates of the rows the pipeline rewrites all the time (issue 13).
-- An update that changes no indexed column is HOT (no new index entries, old versions pruned on
-- the page) only when the new version fits on the same page; at the default fillfactor (100)
-- pages are full, so most of these updates were not HOT. Measured at 6,000 positions/s
-- (benchmarks/pipeline.py): rule_state (every vehicle's state, once per batch that holds it)
-- 40 % HOT, alarms (an episode closing: ended_at, details) 2 % HOT, each of those touching all
-- seven of its indexes; latest_positions 90 %. alarms at 50: an episode is written when it
-- opens and again when it closes, in the same burst when the whole fleet toggles; at 70, 40 % of
-- such closes were HOT, at 50 all of them (a close: 45-55 us per alarm, then 20-22 us).
-- The cost is space: these tables take up to twice the pages (half of each page is kept for the
-- next versions); they hold a row per vehicle, or alarm episodes, far fewer than positions.
-- Applies to pages written from now on (no rewrite, no long lock); rows in full pages move once.
ALTER TABLE rule_state SET (fillfactor = 50);
ALTER TABLE alarms SET (fillfactor = 50);
ALTER TABLE latest_positions SET (fillfactor = 70);
