package admin

import "testing"

// An ordered target's row says so with its delivery settings, and, while a
// failing head holds its line, which event holds it, how many wait, and
// why (targetLine and deliverySettings, run as served, in Node, with el()
// reduced to its text).
func TestUIShowsAnOrderedTargetsLine(t *testing.T) {
	js := uiScript()
	src := jsDeclaration(t, js, "deliverySettings") + jsDeclaration(t, js, "targetLine") + jsDeclaration(t, js, "shortID") + `
const enc = encodeURIComponent;
function el(tag, attrs, ...kids) { return kids.flat().filter((k) => k != null).join(''); }
function chip(text) { return '[' + text + ']'; }
function when(iso) { return 'in 1 h'; }
const wh = {id: 'w1'};
console.log(deliverySettings({type: 'http', options: {ordered: true}}));
console.log(targetLine(wh, {type: 'http', options: {ordered: true}, line: {open: 4, head: {
	event_id: '0193aaaa-bbbb', status: 'retrying', attempts: 3, last_error: 'status 500', next_attempt_at: '2026-12-02T03:00:00Z'}}}));
console.log(targetLine(wh, {type: 'http', options: {ordered: true}, line: {open: 2, head: {event_id: '0193cccc-dddd', status: 'pending', attempts: 0}}}));
console.log(String(targetLine(wh, {type: 'http', options: {ordered: true}})));
`
	b := runNode(t, src)
	want := "default retries · in order, one at a time\n" +
		"[held] 3 waiting behind event 0193aaaa…: attempt 3 failed (status 500), next try in 1 h\n" +
		"in order: 2 open, next event 0193cccc…\n" +
		"null\n"
	if string(b) != want {
		t.Errorf("the UI shows %q, want %q", b, want)
	}
}
