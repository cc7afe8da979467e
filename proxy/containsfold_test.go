package proxy

import "testing"

func TestContainsFold(t *testing.T) {
	tests := []struct {
		s, sub string
		want   bool
	}{
		{"_METHOD=delete", "method", true},
		{"a=1&_MeThOd=x", "method", true},
		{"application/JSON", "/json", true},
		{"text/plain", "json", false},
		{"metho", "method", false},
		{"", "method", false},
		{"_method", "", true},
		{"M_THOD", "m-thod", false}, // '_' is not '-' here
	}
	for _, tc := range tests {
		if got := containsFold(tc.s, tc.sub); got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v; want %v", tc.s, tc.sub, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { containsFold("A=1&B=2&_METHOD=DELETE", "method") }); n != 0 {
		t.Errorf("containsFold allocates %v times; want 0", n)
	}
}
