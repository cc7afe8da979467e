//go:build race

package policy

// raceEnabled is true under the race detector, where sync.Pool drops items
// on purpose, so the regexp package's pooled matchers allocate.
const raceEnabled = true
