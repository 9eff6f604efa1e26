-- Who set each held level and why: a rule, an operator's manual containment, or a release.
ALTER TABLE control_levels
    ADD COLUMN set_by   text NOT NULL DEFAULT '',
    ADD COLUMN set_kind text NOT NULL DEFAULT 'rule'
        CHECK (set_kind IN ('rule', 'manual', 'release')),
    ADD COLUMN reason   text,
    ADD COLUMN ticket   text;
