-- The notes service's one table: psql "$URL" -f schema.sql (safe to run again).
CREATE TABLE IF NOT EXISTS notes (
    id bigserial PRIMARY KEY,
    title text NOT NULL CHECK (title <> ''),
    body text NOT NULL,
    url text,
    url_title text,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- GET /notes lists the newest first.
CREATE INDEX IF NOT EXISTS notes_created_at ON notes (created_at DESC, id DESC);
