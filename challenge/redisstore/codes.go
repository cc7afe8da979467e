package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stepgate/stepgate/challenge"
)

// PutCode stores code under key, replacing any pending code, for ttl. Redis
// is not bounded by this store, so it never returns ErrStoreFull; Redis's
// own maxmemory policy is the bound.
func (s *Store) PutCode(ctx context.Context, key string, code challenge.Code, ttl time.Duration) error {
	if ttl <= 0 {
		// Every entry has a TTL; a code without one would never die.
		return fmt.Errorf("redisstore: put code: ttl %v must be positive", ttl)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	err := putScript.Run(ctx, s.client, []string{s.key(kindCode, key)},
		code.MAC, code.Email, max(code.Attempts, 0), formatTime(code.ExpiresAt), ms(ttl)).Err()
	if err != nil {
		return fmt.Errorf("redisstore: put code: %w", err)
	}
	return nil
}

// PeekCode returns the pending code under key, or ErrNoCode.
func (s *Store) PeekCode(ctx context.Context, key string) (challenge.Code, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	vals, err := s.client.HMGet(ctx, s.key(kindCode, key), "mac", "email", "attempts", "exp").Result()
	if err != nil {
		return challenge.Code{}, fmt.Errorf("redisstore: peek code: %w", err)
	}
	if vals[0] == nil {
		return challenge.Code{}, challenge.ErrNoCode
	}
	strs := make([]string, len(vals))
	for i, v := range vals {
		strs[i], _ = v.(string)
	}
	c, err := parseCode(strs[0], strs[1], strs[2], strs[3])
	if err != nil {
		return challenge.Code{}, fmt.Errorf("redisstore: peek code: %w", err)
	}
	return c, nil
}

// CheckCode atomically compares mac with the pending code under key, in
// constant time inside Redis (see checkScript): a match deletes the code, a
// mismatch counts an attempt and deletes the code at maxAttempts.
func (s *Store) CheckCode(ctx context.Context, key string, mac []byte, maxAttempts int) (challenge.CheckResult, error) {
	if maxAttempts < 1 {
		return challenge.CheckResult{}, fmt.Errorf("redisstore: check code: maxAttempts %d must be positive", maxAttempts)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	reply, err := checkScript.Run(ctx, s.client, []string{s.key(kindCode, key)}, mac, maxAttempts).Slice()
	if err != nil {
		return challenge.CheckResult{}, fmt.Errorf("redisstore: check code: %w", err)
	}
	res, err := parseCheck(reply)
	if err != nil {
		return challenge.CheckResult{}, fmt.Errorf("redisstore: check code: %w", err)
	}
	return res, nil
}

// parseCheck decodes checkScript's reply.
func parseCheck(reply []any) (challenge.CheckResult, error) {
	if len(reply) == 0 {
		return challenge.CheckResult{}, errors.New("empty script reply")
	}
	if found, _ := reply[0].(int64); found == 0 {
		return challenge.CheckResult{}, challenge.ErrNoCode
	}
	if len(reply) != 7 {
		return challenge.CheckResult{}, fmt.Errorf("script reply has %d fields; want 7", len(reply))
	}
	ok, okInt := reply[1].(int64)
	left, leftInt := reply[2].(int64)
	var strs [4]string
	for i := range strs {
		var isStr bool
		if strs[i], isStr = reply[3+i].(string); !isStr {
			return challenge.CheckResult{}, fmt.Errorf("script reply field %d is %T; want string", 3+i, reply[3+i])
		}
	}
	if !okInt || !leftInt {
		return challenge.CheckResult{}, errors.New("script reply has no result")
	}
	c, err := parseCode(strs[0], strs[1], strs[2], strs[3])
	if err != nil {
		return challenge.CheckResult{}, err
	}
	return challenge.CheckResult{OK: ok == 1, AttemptsLeft: int(left), Code: c}, nil
}

// parseCode decodes the code hash's fields.
func parseCode(mac, email, attempts, exp string) (challenge.Code, error) {
	n, err := strconv.Atoi(attempts)
	if err != nil {
		return challenge.Code{}, fmt.Errorf("bad attempts field: %w", err)
	}
	t, err := parseTime(exp)
	if err != nil {
		return challenge.Code{}, err
	}
	return challenge.Code{MAC: []byte(mac), Email: email, Attempts: n, ExpiresAt: t}, nil
}

// formatTime encodes t as Unix nanoseconds, "0" for the zero time (whose
// UnixNano is undefined). Lua only stores and returns it, never does
// arithmetic on it, so its 53-bit numbers do not round it.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func parseTime(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad exp field: %w", err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, n), nil
}

// PutCeremony stores a pending ceremony's state under key for ttl.
func (s *Store) PutCeremony(ctx context.Context, key string, state []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: put ceremony: ttl %v must be positive", ttl)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Set(ctx, s.key(kindCeremony, key), state, ceilMS(ttl)).Err(); err != nil {
		return fmt.Errorf("redisstore: put ceremony: %w", err)
	}
	return nil
}

// TakeCeremony returns and deletes the state under key in one GETDEL
// (Redis 6.2+), atomic across replicas.
func (s *Store) TakeCeremony(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.client.GetDel(ctx, s.key(kindCeremony, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, challenge.ErrNoCeremony
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: take ceremony: %w", err)
	}
	return b, nil
}
