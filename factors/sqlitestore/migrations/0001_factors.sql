-- Enrolled factors. Times are unix microseconds (0 = never).
CREATE TABLE stepgate_factors (
  id           TEXT    PRIMARY KEY,
  user_id      TEXT    NOT NULL,
  type         TEXT    NOT NULL,
  name         TEXT    NOT NULL,
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER NOT NULL DEFAULT 0,
  confirmed    INTEGER NOT NULL DEFAULT 0,
  counter      INTEGER NOT NULL DEFAULT 0,
  public       BLOB    NOT NULL,
  secret       BLOB    NOT NULL
);
CREATE INDEX stepgate_factors_by_user ON stepgate_factors (user_id, created_at);
