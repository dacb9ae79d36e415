-- 督办 (supervision orders, issue 9 section 5): the bureau puts an alarm, or a whole company,
-- under supervision with a deadline and a note; the company's operators answer it. 督办处理率
-- (KPI) = answered by the deadline / issued. Kept with the violation records (3 years).
CREATE TABLE IF NOT EXISTS supervisions (
    id            bigserial PRIMARY KEY,
    company_id    bigint NOT NULL REFERENCES companies(id),
    alarm_id      bigint REFERENCES alarms(id),      -- NULL: the company as a whole
    note          text NOT NULL,
    deadline      timestamptz NOT NULL,
    issued_by     bigint NOT NULL REFERENCES users(id),
    issued_at     timestamptz NOT NULL DEFAULT now(),
    answer        text,
    answered_by   bigint REFERENCES users(id),
    answered_at   timestamptz,
    CHECK (deadline > issued_at),
    CHECK ((answer IS NULL) = (answered_at IS NULL))
);
CREATE INDEX IF NOT EXISTS supervisions_company_idx ON supervisions (company_id, issued_at);
CREATE INDEX IF NOT EXISTS supervisions_alarm_idx ON supervisions (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS supervisions_open_idx ON supervisions (deadline) WHERE answered_at IS NULL;
