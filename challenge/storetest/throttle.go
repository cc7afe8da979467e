package storetest

import (
	"testing"
	"time"

	"github.com/stepgate/stepgate/challenge"
)

// sendStep is one ThrottleSend call at base+at. wait 0 means the send must
// be allowed; otherwise it must be refused with a RetryAfter of wait (or up
// to a second more, for implementations that round up). retry means: call
// at the previous step's time plus the RetryAfter it returned, which must
// then be allowed ("the time until a send would be allowed").
type sendStep struct {
	at    time.Duration
	wait  time.Duration
	retry bool
}

func testThrottleSend(t *testing.T, newStore func(*testing.T) challenge.Store) {
	const h = time.Hour
	tests := []struct {
		name   string
		resend time.Duration
		max    int
		steps  []sendStep
	}{
		{
			name: "resend after", resend: 30 * time.Second, max: 10,
			steps: []sendStep{
				{at: 0},
				{at: 0, wait: 30 * time.Second},
				{at: 10 * time.Second, wait: 20 * time.Second},
				{at: 29 * time.Second, wait: time.Second},
				{at: 31 * time.Second},
				{at: 32 * time.Second, wait: 29 * time.Second},
				{at: 62 * time.Second},
			},
		},
		{
			// A refused send records nothing: had any refusal at 1s..29s
			// counted as a send, the send at 31s would be refused too, and
			// had they counted towards the hour, so would the one at 62s.
			name: "refusals record nothing", resend: 30 * time.Second, max: 3,
			steps: []sendStep{
				{at: 0},
				{at: 1 * time.Second, wait: 29 * time.Second},
				{at: 5 * time.Second, wait: 25 * time.Second},
				{at: 20 * time.Second, wait: 10 * time.Second},
				{at: 29 * time.Second, wait: 1 * time.Second},
				{at: 31 * time.Second},
				{at: 40 * time.Second, wait: 21 * time.Second},
				{at: 60 * time.Second, wait: 1 * time.Second},
				{at: 62 * time.Second},
				{at: 93 * time.Second, wait: h - 93*time.Second},
			},
		},
		{
			// Rolling, not fixed: at 61m a counter reset an hour after the
			// first send would allow a send; the rolling hour (10m, 20m,
			// 60m1s) does not.
			name: "max per rolling hour", resend: 30 * time.Second, max: 3,
			steps: []sendStep{
				{at: 0},
				{at: 10 * time.Minute},
				{at: 20 * time.Minute},
				{at: 30 * time.Minute, wait: 30 * time.Minute},
				{at: 59*time.Minute + 59*time.Second, wait: time.Second},
				{at: 60*time.Minute + time.Second},
				{at: 61 * time.Minute, wait: 9 * time.Minute},
				{at: 70*time.Minute + time.Second},
				{at: 71 * time.Minute, wait: 9 * time.Minute},
			},
		},
		{
			// Both limits refuse: the wait is the longer one.
			name: "hour longer than resend", resend: 30 * time.Second, max: 1,
			steps: []sendStep{
				{at: 0},
				{at: 10 * time.Second, wait: h - 10*time.Second},
			},
		},
		{
			name: "resend longer than hour", resend: 10 * time.Minute, max: 2,
			steps: []sendStep{
				{at: 0},
				{at: 55 * time.Minute},
				{at: 58 * time.Minute, wait: 7 * time.Minute},
				{at: 65*time.Minute + time.Second},
			},
		},
		{
			name: "retry after resend wait", resend: 30 * time.Second, max: 5,
			steps: []sendStep{
				{at: 0},
				{at: 10 * time.Second, wait: 20 * time.Second},
				{retry: true},
			},
		},
		{
			name: "retry after hourly wait", resend: 30 * time.Second, max: 2,
			steps: []sendStep{
				{at: 0},
				{at: time.Minute},
				{at: 2 * time.Minute, wait: 58 * time.Minute},
				{retry: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			user := unique(t)
			base := clock()
			var prev time.Time
			var prevWait time.Duration
			for i, st := range tt.steps {
				now := base.Add(st.at)
				if st.retry {
					now = prev.Add(prevWait)
				}
				err := s.ThrottleSend(t.Context(), user, now, tt.resend, tt.max)
				if st.wait == 0 {
					if err != nil {
						t.Fatalf("step %d: send at +%v: got %v; want allowed", i, now.Sub(base), err)
					}
					continue
				}
				le := limitError(t, err, challenge.ErrThrottled)
				if !near(le.RetryAfter, st.wait, time.Second) {
					t.Fatalf("step %d: send at +%v: got RetryAfter %v; want %v", i, now.Sub(base), le.RetryAfter, st.wait)
				}
				prev, prevWait = now, le.RetryAfter
			}
		})
	}

	t.Run("per user", func(t *testing.T) {
		s := newStore(t)
		u := unique(t)
		now := clock()
		if err := s.ThrottleSend(t.Context(), u, now, time.Minute, 1); err != nil {
			t.Fatalf("first send: %v", err)
		}
		limitError(t, s.ThrottleSend(t.Context(), u, now, time.Minute, 1), challenge.ErrThrottled)
		for _, other := range []string{u + "x", u + ":", u[:len(u)-1]} {
			if err := s.ThrottleSend(t.Context(), other, now, time.Minute, 1); err != nil {
				t.Errorf("send for %q after %q was throttled: got %v; want allowed", other, u, err)
			}
		}
	})
}
