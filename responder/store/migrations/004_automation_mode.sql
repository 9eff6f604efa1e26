-- The one row saying what automation may do: the global mode and any break-glass pause.
CREATE TABLE automation (
    id                 integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    global_mode        text NOT NULL DEFAULT 'enforce'
                       CHECK (global_mode IN ('enforce', 'dry_run', 'paused')),
    break_glass_until  timestamptz,
    break_glass_by     text,
    break_glass_reason text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO automation (id) VALUES (1);
