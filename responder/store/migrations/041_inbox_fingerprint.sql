-- When automation resumes, the latest firing delivery of each still-firing alert of an open
-- incident is planned again (engine/resume.py): found by fingerprint.
CREATE INDEX inbox_fingerprint ON inbox (fingerprint, id);
