-- Enrolled factors. Times are unix microseconds (0 = never).
CREATE TABLE stepgate_factors (
  id           TEXT    PRIMARY KEY,
  user_id      TEXT    NOT NULL,
  type         TEXT    NOT NULL,
  name         TEXT    NOT NULL,
  created_at   BIGINT  NOT NULL,
  last_used_at BIGINT  NOT NULL DEFAULT 0,
  confirmed    BOOLEAN NOT NULL DEFAULT false,
  counter      BIGINT  NOT NULL DEFAULT 0,
  public       BYTEA   NOT NULL,
  secret       BYTEA   NOT NULL
);
CREATE INDEX stepgate_factors_by_user ON stepgate_factors (user_id, created_at);
