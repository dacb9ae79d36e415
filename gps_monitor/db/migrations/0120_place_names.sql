-- Issue 11 (place names): answers of the reverse geocoder (天地图), kept across restarts and
-- shared by the web processes, because free keys have a daily quota. Keyed by the position
-- rounded to web.geocoder_cache_decimals (4 decimals: about 11 m); place NULL: the geocoder
-- knows no address there. Rows older than web.geocoder_cache_days are looked up again.
CREATE TABLE IF NOT EXISTS place_names (
    latitude double precision NOT NULL,
    longitude double precision NOT NULL,
    place text,
    looked_up_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (latitude, longitude)
);
