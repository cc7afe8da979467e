package main

import (
	"context"
	"html/template"
	"net/http"
	"time"

	"github.com/stepgate/stepgate/factors"
	"github.com/stepgate/stepgate/factors/totp"
	"github.com/stepgate/stepgate/respond"
)

// totpCodesPath is the demo-only page that shows the current code of every
// enrolled authenticator app, the way the dev inbox shows mails, so the
// demo can be walked through without a phone. It exists only in demo mode
// (which listens on loopback only).
const totpCodesPath = "/dev/totp"

var totpCodesPage = template.Must(template.New("totp").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>Authenticator codes (demo only) · stepgate</title>
<link rel="stylesheet" href="{{.Prefix}}/style.css">
</head><body><main>
<h1>Authenticator codes</h1>
<p class="error" role="note"><strong>Demo only.</strong> A real stepgate never shows these: the code lives in the user's app. This page reads the enrolled secrets of this demo run to stand in for a phone.</p>
{{if .Codes}}<table>
<thead><tr><th scope="col">User</th><th scope="col">Name</th><th scope="col">Current code</th><th scope="col">Valid for</th></tr></thead>
<tbody>{{range .Codes}}<tr><td>{{.User}}</td><td>{{.Name}}</td><td><code class="totp-code">{{.Code}}</code></td><td>{{.Left}} s</td></tr>{{end}}</tbody>
</table>{{else}}<p>No authenticator app is enrolled yet. Add one at <a href="{{.Prefix}}/factors">{{.Prefix}}/factors</a>.</p>{{end}}
<p>This page refreshes every 5 seconds.</p>
</main></body></html>
`))

type totpCode struct {
	User, Name, Code string
	Left             int
}

// totpCodes serves the demo-only codes page from the factor store.
func totpCodes(store factors.Store, keyring *factors.Keyring, skew int, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		all, err := store.All(ctx)
		if err != nil {
			http.Error(w, "factor store unavailable", http.StatusServiceUnavailable)
			return
		}
		now := time.Now()
		var codes []totpCode
		for _, f := range all {
			if f.Type != factors.TypeTOTP || !f.Confirmed {
				continue
			}
			p, err := totp.ParamsOf(f.Public, skew)
			if err != nil {
				continue
			}
			secret, _, err := keyring.Open(f.User, f.ID, f.Secret)
			if err != nil {
				continue
			}
			code, err := totp.Code(secret, totp.Step(now, p), p)
			clear(secret)
			if err != nil {
				continue
			}
			period := int64(p.Period / time.Second)
			codes = append(codes, totpCode{User: f.User, Name: f.Name, Code: code, Left: int(period - now.Unix()%period)})
		}
		respond.SecureHeaders(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		totpCodesPage.Execute(w, struct {
			Prefix string
			Codes  []totpCode
		}{prefix, codes})
	})
}
