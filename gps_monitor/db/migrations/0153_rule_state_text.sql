-- rule_state.state as text, not jsonb (issue 13). The rules worker writes every vehicle's state
-- once per batch that holds it (at 6,000 positions/s, 6,000 rows a second) and only ever reads
-- the whole document back; nothing queries inside it. jsonb parsed each write: measured on
-- PostgreSQL 15, 464-byte states upserted 2,000 per statement (fillfactor 50), 18-19.5 us of
-- backend CPU per row as jsonb against 6-7.3 us as text. The worker writes JSON text it made
-- itself (rules.state.state_text) and parses it when it loads the states.
-- One rewrite of a table with a row per vehicle.
ALTER TABLE rule_state ALTER COLUMN state TYPE text USING state::text;
