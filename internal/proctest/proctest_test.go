package proctest

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStopIsIdempotent(t *testing.T) {
	for _, grace := range []time.Duration{0, 5 * time.Second} {
		p, err := Start(exec.Command("sleep", "60"))
		if err != nil {
			t.Skipf("no sleep binary: %v", err)
		}
		p.Stop(grace)
		p.Stop(grace) // a second Stop must not block or panic
		select {
		case <-p.Done():
		default:
			t.Fatalf("grace %v: Done not closed after Stop", grace)
		}
	}
}

func TestWaitReady(t *testing.T) {
	p, err := Start(exec.Command("sleep", "60"))
	if err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	defer p.Stop(0)
	calls := 0
	err = p.WaitReady("sleep", 10*time.Second, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitReady = %v after %d probes; want nil after 3", err, calls)
	}
	err = p.WaitReady("sleep", 20*time.Millisecond, time.Millisecond, func() error { return errors.New("refused") })
	if err == nil || !strings.Contains(err.Error(), "sleep not ready after 20ms: refused") {
		t.Fatalf("WaitReady past its timeout = %v; want the probe's error", err)
	}

	exited, err := Start(exec.Command("true"))
	if err != nil {
		t.Skipf("no true binary: %v", err)
	}
	defer exited.Stop(0)
	err = exited.WaitReady("true", 10*time.Second, time.Millisecond, func() error { return errors.New("refused") })
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("WaitReady on an exited process = %v; want it to say so before the timeout", err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
}
