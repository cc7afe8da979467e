package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stepgate/stepgate/challenge"
)

// window is the rolling period of max_sends_per_hour and
// max_failures_per_hour (SPEC §3 otp).
const window = time.Hour

// ThrottleSend records one send for user unless that would exceed one per
// resendAfter or maxPerHour in the rolling hour before now (SPEC §9).
func (s *Store) ThrottleSend(ctx context.Context, user string, now time.Time, resendAfter time.Duration, maxPerHour int) error {
	if maxPerHour < 1 {
		// No send could ever be allowed, and no wait would change that.
		return fmt.Errorf("redisstore: throttle send: maxPerHour %d must be positive", maxPerHour)
	}
	member, err := newMember(now)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	wait, err := throttleScript.Run(ctx, s.client, []string{s.key(kindSend, user)},
		now.UnixMilli(), msOrZero(resendAfter), maxPerHour, window.Milliseconds(), member).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: throttle send: %w", err)
	}
	if wait > 0 {
		return &challenge.LimitError{RetryAfter: time.Duration(wait) * time.Millisecond, Err: challenge.ErrThrottled}
	}
	return nil
}

// AddFailure counts one failed verification for user in the rolling hour
// before now; at maxPerHour it locks the user out for lockout and returns
// lockout (SPEC §3 max_failures_per_hour, lockout: N means N).
func (s *Store) AddFailure(ctx context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error) {
	member, err := newMember(now)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	locked, err := failureScript.Run(ctx, s.client, []string{s.key(kindFail, user), s.key(kindLock, user)},
		now.UnixMilli(), max(maxPerHour, 0), msOrZero(lockout), window.Milliseconds(), member).Int64()
	if err != nil {
		return 0, fmt.Errorf("redisstore: add failure: %w", err)
	}
	return time.Duration(locked) * time.Millisecond, nil
}

// BeginCheck admits one code check for user (challenge.Store.BeginCheck),
// in one script, so replicas sharing the server never admit more than
// maxPerHour wrong codes between them. The ticket is the failure set's
// member counted in advance.
func (s *Store) BeginCheck(ctx context.Context, user string, now time.Time, maxPerHour int, lockout time.Duration) (string, time.Duration, error) {
	member, err := newMember(now)
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	v, err := beginCheckScript.Run(ctx, s.client, []string{s.key(kindFail, user), s.key(kindLock, user)},
		now.UnixMilli(), max(maxPerHour, 0), msOrZero(lockout), window.Milliseconds(), member).Int64Slice()
	if err != nil {
		return "", 0, fmt.Errorf("redisstore: begin check: %w", err)
	}
	if len(v) != 2 {
		return "", 0, fmt.Errorf("redisstore: begin check: bad reply %v", v)
	}
	if v[0] != 1 {
		return "", max(time.Duration(v[1])*time.Millisecond, time.Millisecond), nil
	}
	return member, 0, nil
}

// EndCheck settles a check BeginCheck admitted (challenge.Store.EndCheck).
func (s *Store) EndCheck(ctx context.Context, user, ticket string, failed bool, now time.Time, maxPerHour int, lockout time.Duration) (time.Duration, error) {
	f := "0"
	if failed {
		f = "1"
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	left, err := endCheckScript.Run(ctx, s.client, []string{s.key(kindFail, user), s.key(kindLock, user)},
		now.UnixMilli(), max(maxPerHour, 0), msOrZero(lockout), window.Milliseconds(), ticket, f).Int64()
	if err != nil {
		return 0, fmt.Errorf("redisstore: end check: %w", err)
	}
	return time.Duration(left) * time.Millisecond, nil
}

// FailuresLeft reads the failures counted in the rolling hour
// (challenge.Store.FailuresLeft) in one MULTI: the count (ZCOUNT) and the
// oldest one's time, without changing anything.
func (s *Store) FailuresLeft(ctx context.Context, user string, now time.Time, maxPerHour int) (int, time.Time, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := s.key(kindFail, user)
	from := "(" + strconv.FormatInt(now.Add(-window).UnixMilli(), 10)
	var count *redis.IntCmd
	var first *redis.ZSliceCmd
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		count = p.ZCount(ctx, key, from, "+inf")
		first = p.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: from, Max: "+inf", Count: 1})
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("redisstore: failures left: %w", err)
	}
	var oldest time.Time
	if z := first.Val(); len(z) > 0 {
		oldest = time.UnixMilli(int64(z[0].Score))
	}
	return max(maxPerHour-int(count.Val()), 0), oldest, nil
}

// newMember returns a sorted-set member unique to this event, so that two
// sends or failures in the same millisecond both count.
func newMember(now time.Time) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("redisstore: crypto/rand: %w", err)
	}
	return fmt.Sprintf("%d-%s", now.UnixMilli(), hex.EncodeToString(b[:])), nil
}

// msOrZero is d in milliseconds, rounded up, and 0 for d <= 0.
func msOrZero(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return ms(d)
}
