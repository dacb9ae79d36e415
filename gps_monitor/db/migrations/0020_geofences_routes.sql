-- Geofences, routes and their vehicle assignments (rules engine, issue 3). Geometry is stored
-- as GeoJSON in WGS-84 (x = longitude, y = latitude); it is validated before it is saved
-- (gps_monitor.geofences) and projected into a local metric CRS only when evaluated. No PostGIS.
CREATE TABLE IF NOT EXISTS geofences (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('forbidden', 'keep_in', 'speed_zone', 'watch')),
    geometry         jsonb NOT NULL,            -- GeoJSON Polygon/MultiPolygon/Point/LineString
    radius_m         double precision CHECK (radius_m IS NULL OR radius_m > 0),      -- circle
    corridor_m       double precision CHECK (corridor_m IS NULL OR corridor_m > 0),  -- corridor
    speed_limit_kmh  real CHECK (speed_limit_kmh IS NULL OR speed_limit_kmh > 0),
    road_class       text NOT NULL DEFAULT 'other',
    vehicle_classes  text[] NOT NULL DEFAULT '{}',   -- empty = all classes
    active_hours     text,                           -- local "HH:MM-HH:MM", NULL = always
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A geofence with no rows here applies to every vehicle (of its classes).
CREATE TABLE IF NOT EXISTS geofence_vehicles (
    geofence_id  text NOT NULL REFERENCES geofences(id) ON DELETE CASCADE,
    vehicle_id   bigint NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE,
    PRIMARY KEY (geofence_id, vehicle_id)
);
CREATE INDEX IF NOT EXISTS geofence_vehicles_vehicle_idx ON geofence_vehicles (vehicle_id);

CREATE TABLE IF NOT EXISTS routes (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    line             jsonb NOT NULL,                 -- GeoJSON LineString, driving order
    corridor_m       double precision NOT NULL CHECK (corridor_m > 0),
    speed_limit_kmh  real CHECK (speed_limit_kmh IS NULL OR speed_limit_kmh > 0),
    active_hours     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A route applies only to the vehicles assigned to it.
CREATE TABLE IF NOT EXISTS route_vehicles (
    route_id    text NOT NULL REFERENCES routes(id) ON DELETE CASCADE,
    vehicle_id  bigint NOT NULL REFERENCES vehicles(id) ON DELETE CASCADE,
    PRIMARY KEY (route_id, vehicle_id)
);
CREATE INDEX IF NOT EXISTS route_vehicles_vehicle_idx ON route_vehicles (vehicle_id);
