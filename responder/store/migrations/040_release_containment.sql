-- Each containment of a control key gets a number of its own: a new one every time the
-- held level rises (a rule's step, a person's containment), by trigger, whichever path
-- raised it. A release request names the containment it releases, and its approval is
-- refused once that containment is no longer the one held.
CREATE SEQUENCE containment_seq;
ALTER TABLE control_levels ADD COLUMN containment bigint NOT NULL DEFAULT nextval('containment_seq');

CREATE FUNCTION control_levels_new_containment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.rank > OLD.rank THEN
        NEW.containment := nextval('containment_seq');
    ELSE
        NEW.containment := OLD.containment;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER control_levels_containment
    BEFORE INSERT OR UPDATE ON control_levels
    FOR EACH ROW EXECUTE FUNCTION control_levels_new_containment();

-- A request ended because the key was released or contained again: 'superseded'.
ALTER TABLE release_requests ADD COLUMN containment bigint;
ALTER TABLE release_requests DROP CONSTRAINT release_requests_status_check;
ALTER TABLE release_requests ADD CONSTRAINT release_requests_status_check
    CHECK (status IN ('pending', 'approved', 'expired', 'superseded'));
CREATE INDEX release_requests_pending_key ON release_requests (control, key)
    WHERE status = 'pending';
