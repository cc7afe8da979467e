package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/stepgate/stepgate/factors"
)

const factorsUsage = `Usage:
  stepgate factors list   -config FILE [-user SUB]       list enrolled factors (no secrets)
  stepgate factors remove -config FILE -user SUB [-id ID] remove one factor, or all of the user's (a lost device)
  stepgate factors rekey  -config FILE                   seal every secret under factors.encryption_key

Each removal and rekey writes an audit record (JSON) to stderr.
`

// runFactors is `stepgate factors list|remove|rekey` (SPEC §11): the
// help desk's view of the factor store, for resets when a user loses a
// device, and the key rotation's last step.
func runFactors(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, factorsUsage)
		return errors.New("factors: no subcommand given (list, remove or rekey)")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "list", "remove", "rekey":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, factorsUsage)
		return nil
	default:
		fmt.Fprint(stderr, factorsUsage)
		return fmt.Errorf("factors: unknown subcommand %q", sub)
	}
	fs, path := newFlagSet("factors "+sub, "factors "+sub+" -config FILE [-user SUB] [-id ID]", stderr)
	userFlag := fs.String("user", "", "the user's `SUB`ject (identity)")
	idFlag := fs.String("id", "", "one factor `ID` (remove)")
	if err := configFlag(fs, rest, path); err != nil {
		return ignoreHelp(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("factors %s: unexpected arguments %q", sub, fs.Args())
	}
	if sub == "remove" && *userFlag == "" {
		return errors.New("factors remove: -user SUB is required")
	}
	cfg, err := loadConfig(*path, getenv)
	if err != nil {
		return err
	}
	if !cfg.factorStoreNeeded() {
		return errors.New("factors: no stored method (totp, passkey) is in factors.enabled, so there is no factor store")
	}
	logger, _ := newLogger(cfg.Log, stderr)
	store, keyring, err := openFactors(cfg, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	audit := func(msg, event string, attrs ...slog.Attr) {
		attrs = append([]slog.Attr{slog.String("event", event), slog.String("actor", operator()), slog.String("source", "cli")}, attrs...)
		logger.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch sub {
	case "list":
		var list []factors.Factor
		if *userFlag != "" {
			list, err = store.List(ctx, *userFlag)
		} else {
			list, err = store.All(ctx)
		}
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tID\tTYPE\tNAME\tADDED\tLAST USED\tSTATE")
		for _, f := range list {
			used, state := "never", "active"
			if !f.LastUsedAt.IsZero() {
				used = f.LastUsedAt.UTC().Format(time.RFC3339)
			}
			if !f.Confirmed {
				state = "pending"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\t%s\t%s\n", f.User, f.ID, f.Type, f.Name, f.CreatedAt.UTC().Format(time.RFC3339), used, state)
		}
		return tw.Flush()
	case "remove":
		list, err := store.List(ctx, *userFlag)
		if err != nil {
			return err
		}
		n := 0
		for _, f := range list {
			if *idFlag != "" && f.ID != *idFlag {
				continue
			}
			if err := store.Delete(ctx, f.User, f.ID); err != nil && !errors.Is(err, factors.ErrNotFound) {
				return err
			}
			n++
			audit("factor removed", "factor_removed", slog.String("user", f.User), slog.String("factor", f.ID), slog.String("type", f.Type))
		}
		if n == 0 {
			return fmt.Errorf("factors remove: user %q has no factor%s", *userFlag, map[bool]string{true: " " + *idFlag, false: ""}[*idFlag != ""])
		}
		fmt.Fprintf(stdout, "removed %d factor%s of %s\n", n, plural(n), *userFlag)
		return nil
	default: // rekey
		r, err := factors.Rekey(ctx, store, keyring, identifyFactor)
		audit("factors rekeyed", "factors_rekeyed", slog.Int("rekeyed", r.Rekeyed), slog.Int("current", r.Current), slog.Int("changed", r.Changed),
			slog.Int("lookups_set", r.Lookups.Set), slog.Int("duplicates", len(r.Lookups.Duplicates)))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rekeyed %d, already current %d, changed meanwhile %d; credential lookups recomputed %d\n", r.Rekeyed, r.Current, r.Changed, r.Lookups.Set)
		for _, d := range r.Lookups.Duplicates {
			fmt.Fprintf(stdout, "stored twice: factor %s; remove one of the two (stepgate factors remove)\n", d)
		}
		if n := len(r.Lookups.Duplicates); n > 0 {
			return fmt.Errorf("factors rekey: %d passkey credential%s stored twice (see above)", n, plural(n))
		}
		if r.Changed > 0 {
			return errors.New("factors rekey: some factors changed meanwhile; run it again")
		}
		fmt.Fprintln(stdout, "every secret is under the current key: factors.previous_encryption_keys can be emptied")
		return nil
	}
}

// operator names who ran a CLI command, for its audit records.
func operator() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}
