package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// The event-log web UI: one page, one script, one stylesheet, embedded in
// the binary and served at /webhooker/ui/. It is static: the script reads
// and changes everything through the API, with the same rules as any other
// client. On the admin endpoint it needs no sign-in; on a webhooker_api
// site the page is served to anyone and the script asks for an API key,
// which it keeps in the tab's sessionStorage and sends as a Bearer token.

//go:embed ui/index.html ui/app.js ui/style.css
var uiFS embed.FS

// uiPattern is the route of the UI on a Handler's mux.
const uiPattern = Prefix + "/ui/"

// uiCSP lets the page load only its own script, stylesheet and API: no
// inline script or style, no other origin, no framing (clickjacking), no
// form posts anywhere. The data: image is the empty favicon of index.html,
// which keeps the browser from asking for /favicon.ico.
const uiCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type uiAsset struct {
	body        []byte
	contentType string
	etag        string
}

var uiAssets = loadUIAssets()

func loadUIAssets() map[string]uiAsset {
	types := map[string]string{
		"index.html": "text/html; charset=utf-8",
		"app.js":     "text/javascript; charset=utf-8",
		"style.css":  "text/css; charset=utf-8",
	}
	assets := make(map[string]uiAsset, len(types)+1)
	for name, ct := range types {
		b, err := uiFS.ReadFile("ui/" + name)
		if err != nil {
			panic("admin: embedded UI asset missing: " + name) // caught by any test
		}
		sum := sha256.Sum256(b)
		assets[name] = uiAsset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	assets[""] = assets["index.html"]
	return assets
}

// routeUI serves the UI under /webhooker/ui/. ServeHTTP lets requests for
// it through without an API key: it is the same static files for everyone.
func (h *Handler) routeUI() {
	h.mux.HandleFunc(uiPattern, serveUI)
	// The subtree serves the page at its root and each asset by name.
	for _, method := range []string{"GET", "HEAD"} {
		h.routes = append(h.routes, method+" "+uiPattern, method+" "+uiPattern+"{asset}")
	}
}

func serveUI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, errorf(http.StatusMethodNotAllowed, "%s is not allowed here (allowed: GET, HEAD)", r.Method))
		return
	}
	a, ok := uiAssets[strings.TrimPrefix(r.URL.Path, uiPattern)]
	if !ok {
		writeError(w, errorf(http.StatusNotFound, "no such file in the UI: %s", r.URL.Path))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	hd.Set("Content-Security-Policy", uiCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	// Same-origin requests keep their Referer: Caddy's admin endpoint reads
	// the origin of a browser's GET from it. Other origins learn nothing.
	hd.Set("Referrer-Policy", "same-origin")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
