// The webhooker event-log UI. Plain JavaScript, no framework, no build step.
//
// Everything goes through the JSON API next to this page (/webhooker/…), with
// fetch(): state-changing requests carry Content-Type: application/json, so a
// cross-site page could only send them after a CORS preflight that is never
// granted. No cookies are used. On a webhooker_api site the API answers 401
// without a key: the page then asks for one and keeps it in this tab's
// sessionStorage only (never in a URL, never in localStorage).
//
// Live updates come from one streamed request, GET /webhooker/stream
// (server-sent events read with fetch(), so that a tenant's page can send
// its key in the Authorization header, which an EventSource cannot): the
// page refetches what it shows when a change names its webhook. Nothing is
// asked on a timer: no request is made while nothing changes, except a
// bulk redelivery job's progress, read once a second while it runs.

const API = location.pathname.replace(/\/ui(\/.*)?$/, '');
const KEY_ITEM = 'webhooker.apiKey';
const REDACTED = '(redacted)'; // what the API shows for a secret it keeps
const BASE_ITEM = 'webhooker.entrypointBase'; // not a secret: a URL prefix
const REFRESH_DEBOUNCE_MS = 300; // changes come in bursts: one refetch for a burst
const STREAM_BACKOFF_MIN_MS = 1000;
const STREAM_BACKOFF_MAX_MS = 30000;
const STREAM_LINE_MAX = 64 * 1024; // a longer line is not ours: dropped
const JOB_FOLLOW_MS = 1000; // a bulk redelivery's progress, only while it runs
const EVENTS_PAGE = 25;
const STATUSES = ['failed', 'retrying', 'pending', 'delivered'];

const $ = (id) => document.getElementById(id);

const state = {
	mode: '', // 'admin' (Caddy's admin endpoint) or 'tenant' (API key); '' until known
	gen: 0, // bumped on every navigation; stale async renders check it
	view: null, // what the page shows: {webhookID (null: all), refresh}, refetched on a change
	settings: null, // GET /settings, once signed in: {public_url, tenant}
};

// ---------- DOM helpers ----------

// el builds an element. Text is always set as text, never parsed as HTML.
function el(tag, attrs, ...children) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v == null || v === false) continue;
		if (k === 'class') e.className = v;
		else if (k === 'text') e.textContent = v;
		else if (k === 'dataset') Object.assign(e.dataset, v);
		else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
		else e.setAttribute(k, v === true ? '' : v);
	}
	for (const c of children.flat(Infinity)) {
		if (c == null || c === false) continue;
		e.append(c instanceof Node ? c : String(c));
	}
	return e;
}

// put replaces the children of box, as el would set them.
function put(box, ...children) {
	box.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
	return box;
}

function button(label, onclick, cls, attrs) {
	return el('button', { type: 'button', class: cls || '', onclick, ...attrs }, label);
}

function chip(text, cls, title) {
	return el('span', { class: 'chip ' + (cls || ''), title }, text);
}

function mono(text, title) {
	return el('span', { class: 'mono', title }, text);
}

// ---------- formatting ----------

function pad(n) {
	return String(n).padStart(2, '0');
}

function fmtTime(iso) {
	if (!iso) return '—';
	const d = new Date(iso);
	return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// fmtSpan says how long s seconds (s >= 0) is: one unit, or two when
// precise is set and the second is not zero ("1 h 2 min", "3 min 20 s").
function fmtSpan(s, precise) {
	if (s < 60) return `${s} s`;
	const m = Math.floor(s / 60);
	if (m < 60) return precise && m < 10 && s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
	const h = Math.floor(m / 60);
	if (h < 24) return precise && m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
	const d = Math.floor(h / 24);
	return precise && h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

// fmtRel tells a time relative to now: "5 s ago", "in 30 s", "in 1 h 2 min".
// A future time is told precisely: it is when something will happen.
function fmtRel(iso) {
	if (!iso) return '—';
	const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
	if (s > 0) return `in ${fmtSpan(s, true)}`;
	if (s > -2) return 'just now';
	return `${fmtSpan(-s, false)} ago`;
}

// fmtDue tells when something is due: "in 25 s", or "due now" once the
// time has passed and the change it brings has not been heard of yet.
function fmtDue(iso) {
	if (!iso) return '—';
	return new Date(iso).getTime() > Date.now() + 500 ? fmtRel(iso) : 'due now';
}

// when shows a time relative to now ("3 min ago", "in 30 s"), with the
// exact local time on hover. due: a time something is expected at.
function when(iso, due) {
	clockSoon();
	return el('time', { datetime: iso || '', title: fmtTime(iso), dataset: { rel: due ? 'due' : 'rel' } }, due ? fmtDue(iso) : fmtRel(iso));
}

// The clock keeps the relative times on the page true ("in 25 s" counts
// down) by rewriting their text: it asks the server nothing. It runs only
// while such times are shown and the tab is visible, each second while one
// is within two minutes of now, else twice a minute.
let clockTimer = 0;
let clockQueued = false;
function clockSoon() {
	if (clockQueued) return;
	clockQueued = true;
	setTimeout(() => {
		clockQueued = false;
		clock();
	}, 0);
}

function clock() {
	clearTimeout(clockTimer);
	clockTimer = 0;
	if (document.visibilityState !== 'visible') return;
	const times = document.querySelectorAll('time[data-rel]');
	if (times.length === 0) return;
	let near = false;
	for (const t of times) {
		const iso = t.getAttribute('datetime');
		if (!iso) continue;
		t.textContent = t.dataset.rel === 'due' ? fmtDue(iso) : fmtRel(iso);
		if (Math.abs(new Date(iso).getTime() - Date.now()) < 120000) near = true;
	}
	clockTimer = setTimeout(clock, near ? 1000 : 30000);
}

function fmtBytes(n) {
	if (n == null) return '—';
	if (n < 1024) return `${n} B`;
	if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
	return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function fmtMS(ms) {
	if (ms == null) return '—';
	if (ms < 1) return `${ms.toFixed(2)} ms`;
	if (ms < 1000) return `${ms.toFixed(1)} ms`;
	return `${(ms / 1000).toFixed(2)} s`;
}

function shortID(id) {
	return id ? id.slice(0, 8) + '…' : '';
}

// ---------- API ----------

class ApiError extends Error {
	constructor(status, message) {
		super(message);
		this.status = status;
	}
}

// authHeaders are the headers every request to the API carries: the
// tab's API key, if it has one.
function authHeaders() {
	const key = sessionStorage.getItem(KEY_ITEM);
	return key ? { Authorization: 'Bearer ' + key } : {};
}

async function api(method, path, body) {
	const headers = { Accept: 'application/json', ...authHeaders() };
	const key = sessionStorage.getItem(KEY_ITEM);
	const init = { method, headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
	if (method !== 'GET') {
		headers['Content-Type'] = 'application/json';
		if (body !== undefined) init.body = JSON.stringify(body);
	}
	let res;
	try {
		res = await fetch(API + path, init);
	} catch (e) {
		throw new ApiError(0, `The server did not answer (${e.message}). Is Caddy running?`);
	}
	const text = await res.text();
	let data = null;
	if (text) {
		try {
			data = JSON.parse(text);
		} catch {
			data = null;
		}
	}
	if (!res.ok) {
		const msg = (data && typeof data.error === 'string' && data.error) || `${res.status} ${res.statusText}`.trim();
		throw new ApiError(res.status, msg);
	}
	if (state.mode === '') setMode(key ? 'tenant' : 'admin');
	return data;
}

const enc = encodeURIComponent;

// ---------- messages ----------

function showError(err) {
	if (err instanceof ApiError && err.status === 401) {
		const had = sessionStorage.getItem(KEY_ITEM) !== null;
		sessionStorage.removeItem(KEY_ITEM);
		setMode('');
		renderSignIn(had ? `Signed out: ${err.message}` : '');
		return;
	}
	$('banner-text').textContent = err instanceof Error ? err.message : String(err);
	$('banner').hidden = false;
}

function clearError() {
	$('banner').hidden = true;
	$('banner-text').textContent = '';
}

let toastTimer = 0;
function toast(text) {
	const t = $('toast');
	t.textContent = text;
	t.hidden = false;
	clearTimeout(toastTimer);
	toastTimer = setTimeout(() => (t.hidden = true), 2500);
}

// run performs a user's action: errors go to the banner, and the button is
// disabled meanwhile so that a double click does not do it twice.
async function run(btn, fn) {
	if (btn) btn.disabled = true;
	clearError();
	try {
		return await fn();
	} catch (e) {
		showError(e);
	} finally {
		if (btn) btn.disabled = false;
	}
}

function confirmDialog(title, text, okLabel) {
	const d = $('confirm');
	$('confirm-title').textContent = title;
	$('confirm-text').textContent = text;
	$('confirm-ok').textContent = okLabel;
	d.returnValue = '';
	return new Promise((resolve) => {
		// The close event is dispatched later than close(): one of the
		// dialog before, closed just now, may arrive while this one is open.
		const closed = () => {
			if (d.open) return;
			d.removeEventListener('close', closed);
			resolve(d.returnValue === 'ok');
		};
		d.addEventListener('close', closed);
		d.showModal();
		$('confirm-cancel').focus();
	});
}

// ---------- session ----------

function setMode(mode) {
	state.mode = mode;
	if (mode === '') {
		document.body.removeAttribute('data-mode');
		state.settings = null;
		stopStream();
	} else {
		document.body.dataset.mode = mode;
		startStream();
	}
	const s = $('session');
	put(s);
	if (mode === 'admin') {
		s.append(el('span', { class: 'muted', title: 'Served by Caddy\'s admin endpoint or a webhooker_admin site: every webhook is shown.' }, 'Operator'));
	} else if (mode === 'tenant') {
		const key = sessionStorage.getItem(KEY_ITEM) || '';
		s.append(
			el('span', { class: 'muted', title: 'The key is kept in this tab only.' }, 'API key ', mono(key.slice(0, 12) + '…')),
			button('Sign out', signOut, 'link', { id: 'sign-out' }),
		);
	}
}

function signOut() {
	sessionStorage.removeItem(KEY_ITEM);
	setMode('');
	renderSignIn('Signed out.');
}

function renderSignIn(message) {
	state.gen++;
	unwatch();
	clearError();
	setCrumbs([]);
	const input = el('input', {
		id: 'api-key', type: 'password', name: 'api-key', autocomplete: 'off', spellcheck: 'false',
		placeholder: 'whk_…', required: true, 'aria-describedby': 'sign-in-help',
	});
	const error = el('p', { id: 'sign-in-error', class: 'error', role: 'alert', hidden: !message }, message || '');
	const submit = el('button', { type: 'submit', class: 'primary', id: 'sign-in' }, 'Sign in');
	const form = el('form', { class: 'panel sign-in', id: 'sign-in-form' },
		el('h1', {}, 'Sign in'),
		el('p', { id: 'sign-in-help', class: 'muted' },
			'This site serves the webhooker API to holders of an API key, each seeing their own webhooks. ',
			'The key is kept in this browser tab only (session storage) and sent as Authorization: Bearer.'),
		el('label', { for: 'api-key' }, 'API key'),
		input,
		error,
		el('div', { class: 'buttons' }, submit),
	);
	form.addEventListener('submit', async (ev) => {
		ev.preventDefault();
		const key = input.value.trim();
		if (!key) return;
		submit.disabled = true;
		sessionStorage.setItem(KEY_ITEM, key);
		state.mode = '';
		try {
			await api('GET', '/webhooks');
			route();
		} catch (e) {
			sessionStorage.removeItem(KEY_ITEM);
			error.textContent = e.status === 401 ? `That API key was refused: ${e.message}` : e.message;
			error.hidden = false;
			input.select();
		} finally {
			submit.disabled = false;
		}
	});
	put($('main'), form);
	input.focus();
}

// ---------- live updates ----------
// One streamed request, GET /stream, tells which webhook changed (an event
// came in, a delivery was attempted, a breaker opened...). The page then
// refetches its view if it shows that webhook, at most once per burst of
// changes, and never while the tab is hidden (it catches up when shown).
// A dropped stream is reopened with a growing delay; after a reconnection
// the view is refetched, for the changes that went unheard meanwhile.

const live = { ctl: null, status: 'off', backoff: 0, timer: 0, connected: false };

function startStream() {
	if (live.ctl || live.status === 'unavailable') return;
	clearTimeout(live.timer);
	const ctl = new AbortController();
	live.ctl = ctl;
	setLive(live.connected ? 'reconnecting' : 'connecting');
	readStream(ctl);
}

async function readStream(ctl) {
	const began = Date.now();
	let res;
	try {
		res = await fetch(API + '/stream', {
			headers: { Accept: 'text/event-stream', ...authHeaders() },
			credentials: 'omit', cache: 'no-store', redirect: 'error', signal: ctl.signal,
		});
	} catch {
		return streamEnded(ctl, began);
	}
	if (res.status === 404 || res.status === 501) {
		// This server has no live updates: the Refresh buttons remain.
		if (live.ctl === ctl) live.ctl = null;
		setLive('unavailable');
		return;
	}
	if (res.status === 401) {
		// The key was refused: the next API call signs out and says why.
		if (live.ctl === ctl) live.ctl = null;
		setLive('off');
		return;
	}
	if (!res.ok || !res.body) return streamEnded(ctl, began);
	const again = live.connected;
	live.connected = true;
	setLive('on');
	if (again) changed(null);
	const parse = sseParser((type, data) => {
		if (type !== 'change') return;
		let msg;
		try {
			msg = JSON.parse(data);
		} catch {
			return; // not ours
		}
		if (msg && typeof msg.webhook_id === 'string') changed(msg.webhook_id);
	});
	const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
	try {
		for (;;) {
			const { value, done } = await reader.read();
			if (done) break;
			parse(value);
		}
	} catch {
		// dropped: reconnect below
	}
	streamEnded(ctl, began);
}

// streamEnded schedules the next connection: 1 s, then doubling up to
// 30 s, with jitter so that many tabs do not come back at once. A stream
// that lasted a while starts again from 1 s.
function streamEnded(ctl, began) {
	if (live.ctl !== ctl || ctl.signal.aborted) return;
	live.ctl = null;
	if (Date.now() - began > 60000) live.backoff = 0;
	live.backoff = live.backoff ? Math.min(live.backoff * 2, STREAM_BACKOFF_MAX_MS) : STREAM_BACKOFF_MIN_MS;
	setLive('reconnecting');
	live.timer = setTimeout(startStream, live.backoff * (0.75 + Math.random() / 2));
}

function stopStream() {
	clearTimeout(live.timer);
	const ctl = live.ctl;
	live.ctl = null;
	if (ctl) ctl.abort();
	live.connected = false;
	live.backoff = 0;
	live.status = 'off';
	setLive('off');
}

// sseParser reads a text/event-stream in chunks and calls onEvent(type,
// data) for each event (comments such as the server's ": ping" are skipped).
function sseParser(onEvent) {
	let buf = '';
	let type = '';
	let data = [];
	return (chunk) => {
		buf += chunk;
		const lines = buf.split(/\r\n|\r|\n/);
		buf = lines.pop();
		if (buf.length > STREAM_LINE_MAX) buf = '';
		for (const line of lines) {
			if (line === '') {
				if (data.length) onEvent(type || 'message', data.join('\n'));
				type = '';
				data = [];
				continue;
			}
			if (line.startsWith(':')) continue;
			const i = line.indexOf(':');
			const field = i < 0 ? line : line.slice(0, i);
			let value = i < 0 ? '' : line.slice(i + 1);
			if (value.startsWith(' ')) value = value.slice(1);
			if (field === 'event') type = value;
			else if (field === 'data') data.push(value);
		}
	};
}

function setLive(status) {
	if (status !== 'off' || live.status !== 'unavailable') live.status = status;
	const box = $('live');
	if (!box) return;
	const text = {
		on: '● Live',
		connecting: 'Connecting…',
		reconnecting: 'Reconnecting…',
		unavailable: 'No live updates here: use Refresh',
		off: 'Not live',
	}[live.status];
	box.textContent = text;
	box.title = live.status === 'on'
		? 'This page changes as events arrive and deliveries progress.'
		: live.status === 'unavailable' ? 'This server does not stream changes.' : 'Live updates resume when the connection is back.';
	box.classList.toggle('on', live.status === 'on');
}

// watch makes refresh what the page does when webhookID (null: any webhook)
// changes. One view is watched at a time: navigating replaces it.
function watch(webhookID, refresh) {
	unwatch();
	state.view = { webhookID, refresh, timer: 0, busy: false, again: false, stale: false };
	setLive(live.status);
	return state.view;
}

function unwatch() {
	if (state.view) clearTimeout(state.view.timer);
	state.view = null;
}

// changed is called for each change the stream reports (webhookID null:
// anything may have changed).
function changed(webhookID) {
	bulkChanged(webhookID);
	const v = state.view;
	if (!v || (webhookID && v.webhookID && webhookID !== v.webhookID)) return;
	if (document.visibilityState !== 'visible') {
		v.stale = true;
		return;
	}
	clearTimeout(v.timer);
	v.timer = setTimeout(() => refreshView(v), REFRESH_DEBOUNCE_MS);
}

// refreshView refetches a view; a change heard while it does so brings one
// more refetch after it, never two at once.
async function refreshView(v) {
	if (state.view !== v) return;
	if (v.busy) {
		v.again = true;
		return;
	}
	v.busy = true;
	v.stale = false;
	try {
		await v.refresh();
	} catch (e) {
		if (state.view === v) showError(e);
	} finally {
		v.busy = false;
		if (v.again && state.view === v) {
			v.again = false;
			refreshView(v);
		}
	}
}

document.addEventListener('visibilitychange', () => {
	if (document.visibilityState !== 'visible') return;
	clock();
	const v = state.view;
	if (v && v.stale) refreshView(v);
});

// ---------- routing ----------

function setCrumbs(items) {
	document.title = [...items.map((i) => i[0]).reverse(), 'webhooker'].join(' · ');
	const c = $('crumbs');
	put(c);
	for (const [label, href] of items) {
		c.append(el('span', { class: 'sep' }, '/'), href ? el('a', { href }, label) : el('span', {}, label));
	}
}

// The hash is the page's address: #/, #/webhooks/{id} (and after a ? the
// event log's filters, so that a filtered view can be shared and survives a
// reload), #/webhooks/{id}/events/{event id}.
function parseHash() {
	const raw = location.hash.replace(/^#\/?/, '');
	const q = raw.indexOf('?');
	const path = q < 0 ? raw : raw.slice(0, q);
	const parts = path.split('/').filter(Boolean).map((p) => {
		try {
			return decodeURIComponent(p);
		} catch {
			return p;
		}
	});
	return { parts, query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function route() {
	state.gen++;
	unwatch();
	clearError();
	// Back or forward while the bulk dialog is open: it was about the page left.
	if ($('bulk-dialog').open) $('bulk-dialog').close();
	const { parts, query } = parseHash();
	if (parts[0] === 'webhooks' && parts[1]) {
		if (parts[2] === 'events' && parts[3]) return renderEvent(parts[1], parts[3]);
		return renderWebhook(parts[1], query);
	}
	return renderList();
}

// liveBox is the page's indicator of live updates, with a Refresh button
// that refetches the view at once (the way to refresh where the server
// does not stream changes).
function liveBox() {
	const box = el('span', { id: 'live', class: 'live muted', role: 'status' });
	const refresh = button('Refresh', (ev) => run(ev.currentTarget, async () => {
		const v = state.view;
		if (v) await v.refresh();
	}), 'small', { id: 'refresh', title: 'Read this page again from the server' });
	queueMicrotask(() => setLive(live.status));
	return [box, refresh];
}

// settings reads GET /settings once per sign-in. A server without the
// route (or any error but a refused key) leaves the defaults.
async function settings() {
	if (state.settings) return state.settings;
	try {
		state.settings = (await api('GET', '/settings')) || {};
	} catch (e) {
		if (e.status === 401) throw e;
		return {};
	}
	return state.settings;
}

window.addEventListener('hashchange', route);
$('banner-close').addEventListener('click', clearError);

// ---------- webhooks list ----------

function renderList() {
	const gen = state.gen;
	setCrumbs([['Webhooks']]);
	const list = el('div', { id: 'webhook-list' }, el('p', { class: 'muted' }, 'Loading…'));
	const form = webhookForm(null, async (body, btn) => {
		const wh = await run(btn, () => api('POST', '/webhooks', body));
		if (wh) {
			toast(`Webhook ${wh.name} created`);
			location.hash = `#/webhooks/${enc(wh.id)}`;
		}
	});
	form.hidden = true;
	const newBtn = button('New webhook', () => {
		form.hidden = false;
		form.querySelector('input').focus();
	}, 'primary', { id: 'new-webhook' });
	const node = el('p', { id: 'cluster-node', class: 'note small', hidden: true });
	put($('main'),
		el('div', { class: 'page-head' }, el('h1', {}, 'Webhooks'), el('div', { class: 'actions' }, liveBox(), newBtn)),
		node,
		form,
		list,
	);
	const load = async () => {
		const [data, set] = await Promise.all([api('GET', '/webhooks?stats=true'), settings()]);
		if (gen !== state.gen) return;
		drawClusterNode(node, set.cluster);
		put(list, webhookTable(data.webhooks || []));
	};
	watch(null, load);
	load().catch(showError);
}

// drawClusterNode says, in cluster mode, which node answers and how it
// stands (GET /settings' cluster, read once per sign-in).
function drawClusterNode(box, c) {
	if (!c) return;
	box.hidden = false;
	const parts = [
		`Cluster node ${c.node}`,
		c.ready ? 'taking events' : 'not taking events (no quorum)',
		c.routes >= 0 ? `routed to ${c.routes} other node${c.routes === 1 ? '' : 's'}` : 'on an external NATS',
		`${c.partitions_owned} of ${c.partitions} partitions here`,
		`${c.held_messages} event${c.held_messages === 1 ? '' : 's'} awaiting deliveries`,
	];
	put(box, parts.join(' · '), el('br'), el('span', { class: 'muted' },
		`Event lists read every node; a change made here reaches every node (configuration log: change ${c.config_applied} applied here).`));
}

function webhookTable(webhooks) {
	if (webhooks.length === 0) {
		return el('div', { class: 'empty', id: 'no-webhooks' },
			el('p', {}, state.mode === 'tenant' ? 'No webhooks belong to this API key yet.' : 'No webhooks yet.'),
			el('p', { class: 'muted' }, state.mode === 'tenant'
				? 'Create one with New webhook.'
				: 'Create one with New webhook, or declare one in the webhooker option of the Caddyfile.'));
	}
	const rows = webhooks.map((w) => {
		const st = w.stats;
		return el('tr', { dataset: { webhookId: w.id }, class: w.active ? '' : 'inactive' },
			el('td', {},
				el('a', { href: `#/webhooks/${enc(w.id)}`, class: 'strong webhook-link' }, w.name),
				' ', w.active ? null : chip('disabled', 'st-off'),
				w.read_only ? chip('Caddyfile', 'st-ro', 'Declared in the Caddyfile: read-only here') : null,
				w.description ? el('div', { class: 'muted small' }, w.description) : null),
			el('td', {}, entrypointSummary(w.entrypoints)),
			el('td', {}, targetSummary(w.targets)),
			el('td', { class: 'num' }, st ? String(st.events) : '—'),
			el('td', {}, st && st.last_event_at ? when(st.last_event_at) : el('span', { class: 'muted' }, 'none')),
			el('td', {}, w.stats_error ? el('span', { class: 'error' }, w.stats_error) : health(st)));
	});
	return el('table', { class: 'grid', id: 'webhooks' },
		el('thead', {}, el('tr', {},
			el('th', {}, 'Webhook'), el('th', {}, 'Entrypoints'), el('th', {}, 'Targets'),
			el('th', { class: 'num' }, 'Events'), el('th', {}, 'Last event'),
			el('th', { title: 'Deliveries by status, all events kept' }, 'Deliveries'))),
		el('tbody', {}, rows));
}

function entrypointSummary(eps) {
	if (!eps || eps.length === 0) return el('span', { class: 'muted' }, 'none');
	return el('div', { class: 'stack' }, eps.slice(0, 3).map((e) =>
		el('span', { class: 'mono small' + (e.active ? '' : ' struck'), title: e.active ? e.key : `${e.key} (disabled)` },
			e.key.length > 24 ? shortID(e.key) : e.key)),
	eps.length > 3 ? el('span', { class: 'muted small' }, `+${eps.length - 3} more`) : null);
}

function targetSummary(targets) {
	if (!targets || targets.length === 0) return el('span', { class: 'muted' }, 'none');
	return el('div', { class: 'chips' }, targets.map((t) =>
		chip([t.name, el('span', { class: 'type' }, t.paused ? 'paused' : t.type)],
			'target' + (t.active ? '' : ' st-off') + (t.paused ? ' st-paused' : '') + (t.circuit === 'open' ? ' st-failed' : ''),
			`${t.name}: ${t.type}${t.url ? ' → ' + t.url : ''}${t.active ? '' : ' (disabled)'}${t.paused ? ' (paused: its deliveries wait)' : ''}${t.circuit && t.circuit !== 'closed' ? ', circuit ' + t.circuit : ''}`)));
}

// health shows the deliveries of a webhook by status, problems first.
function health(st) {
	if (!st) return el('span', { class: 'muted' }, '—');
	const parts = STATUSES.filter((s) => st.deliveries && st.deliveries[s] > 0)
		.map((s) => chip(`${st.deliveries[s]} ${s}`, 'st-' + s));
	return parts.length ? el('div', { class: 'chips' }, parts) : el('span', { class: 'muted' }, 'none yet');
}

// shortDuration drops the zero minutes and seconds of a Go duration
// string: 48h0m0s reads 48h.
function shortDuration(d) {
	return d.replace(/(\d)h0m0s$/, '$1h').replace(/(\d)m0s$/, '$1m');
}

// webhookForm creates (wh null) or edits a webhook.
function webhookForm(wh, onSubmit, onCancel) {
	const name = el('input', { name: 'name', id: 'webhook-name', required: true, value: wh ? wh.name : '', autocomplete: 'off' });
	const desc = el('input', { name: 'description', id: 'webhook-description', value: wh ? wh.description || '' : '', autocomplete: 'off' });
	const ret = el('input', { name: 'retention_days', id: 'webhook-retention', type: 'number', min: '0', step: '1', value: wh ? String(wh.retention_days || 0) : '0' });
	// Idempotent ingest: where a delivery's id is, and for how long it is
	// remembered (blank: 24h).
	const dd = wh && wh.dedup;
	const dedupKind = el('select', { id: 'webhook-dedup-kind', name: 'dedup_kind' },
		el('option', { value: '' }, 'none: every request is a new event'),
		el('option', { value: 'header' }, 'a header'),
		el('option', { value: 'expression' }, 'a CEL expression'));
	dedupKind.value = dd ? dd.kind : '';
	const dedupSource = el('input', { id: 'webhook-dedup-source', name: 'dedup_source', class: 'mono', spellcheck: 'false', autocomplete: 'off',
		placeholder: 'X-GitHub-Delivery, or body.id', value: dd ? dd.source : '' });
	const dedupWindow = el('input', { id: 'webhook-dedup-window', name: 'dedup_window', autocomplete: 'off', placeholder: '24h',
		value: dd && dd.window ? shortDuration(dd.window) : '' });
	const save = el('button', { type: 'submit', class: 'primary', id: wh ? 'save-webhook' : 'create-webhook' }, wh ? 'Save' : 'Create webhook');
	const form = el('form', { class: 'panel form', id: wh ? 'edit-webhook-form' : 'new-webhook-form' },
		el('h2', {}, wh ? 'Edit webhook' : 'New webhook'),
		field('Name', name),
		field('Description', desc, 'Optional.'),
		field('Keep events for (days)', ret, '0 keeps them forever.'),
		field('Deduplicate by', dedupKind, 'A request whose id was seen within the window gets the first event’s id, and nothing is stored or delivered.'),
		field('Id', dedupSource, 'The header’s name, or a CEL expression giving a string or an int (body.id). No id: stored as any other.'),
		field('Window', dedupWindow, 'How long an id is remembered: 1s to 720h. Blank: 24h.'),
		el('div', { class: 'buttons' }, save, button('Cancel', () => { form.hidden = true; if (onCancel) onCancel(); })),
		wh ? null : el('p', { class: 'muted small' }, 'The new webhook gets one entrypoint with a random key; add targets on its page.'));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const dedup = dedupKind.value ? { kind: dedupKind.value, source: dedupSource.value.trim() } : null;
		if (dedup && dedupWindow.value.trim()) dedup.window = dedupWindow.value.trim();
		onSubmit({ name: name.value.trim(), description: desc.value.trim(), retention_days: parseInt(ret.value || '0', 10), dedup }, save);
	});
	return form;
}

function field(label, input, help) {
	const id = input.id;
	return el('div', { class: 'field' },
		el('label', { for: id }, label),
		input,
		help ? el('span', { class: 'help' }, help) : null);
}

// ---------- one webhook ----------

// defaultEntrypointBase is the URL an entrypoint's key is appended to,
// unless this browser was told otherwise: the server's public_url when it
// has one (taken as the prefix itself when it has a path, else as the
// site's origin, followed by /hooks/), else this page's origin + /hooks/.
// Behind a proxy, or on Caddy's admin endpoint, only public_url is right.
function defaultEntrypointBase() {
	const pub = state.settings && state.settings.public_url;
	if (pub) {
		try {
			const u = new URL(pub);
			if (u.pathname !== '/' || u.search) return pub.endsWith('/') ? pub : pub + '/';
			return u.origin + '/hooks/';
		} catch {
			// not a URL: the page's origin below
		}
	}
	return location.origin + '/hooks/';
}

function entrypointBase() {
	return localStorage.getItem(BASE_ITEM) || defaultEntrypointBase();
}

async function renderWebhook(id, query) {
	const gen = state.gen;
	setCrumbs([['Webhooks', '#/'], [shortID(id)]]);
	put($('main'), el('p', { class: 'muted' }, 'Loading…'));
	let wh;
	try {
		[wh] = await Promise.all([api('GET', `/webhooks/${enc(id)}`), settings()]);
	} catch (e) {
		if (gen !== state.gen) return;
		put($('main'), el('div', { class: 'empty' }, el('p', {}, e.status === 404 ? 'This webhook does not exist (any more).' : 'The webhook could not be read.'), el('p', {}, el('a', { href: '#/' }, 'All webhooks'))));
		showError(e);
		return;
	}
	if (gen !== state.gen) return;
	setCrumbs([['Webhooks', '#/'], [wh.name]]);

	const head = el('div', { id: 'webhook-head' });
	const eps = el('section', { id: 'entrypoints' });
	const targets = el('section', { id: 'targets' });
	const events = el('section', { id: 'events' });
	put($('main'), head, eps, targets, events);

	let log = null;
	const reload = async () => {
		const fresh = await api('GET', `/webhooks/${enc(id)}`);
		if (gen !== state.gen) return;
		draw(fresh);
		await log.load();
	};
	const draw = (w) => {
		wh = w;
		drawWebhookHead(head, w, reload);
		drawEntrypoints(eps, w, reload);
		drawTargets(targets, w, reload);
		if (log) log.setWebhook(w);
	};
	draw(wh);

	log = eventLog(events, wh, gen, query);
	// A change redraws the targets (circuit, paused) only if they changed,
	// so that a form being filled in above is left alone, then the events.
	watch(id, async () => {
		const fresh = await api('GET', `/webhooks/${enc(id)}`);
		if (gen !== state.gen) return;
		if (JSON.stringify(fresh.targets) !== JSON.stringify(wh.targets)) {
			wh = fresh;
			drawTargets(targets, fresh, reload);
			log.setWebhook(fresh);
		}
		await log.load();
	});
	await log.load().catch(showError);
}

function drawWebhookHead(box, wh, reload) {
	const ro = wh.read_only;
	const actions = ro ? [] : [
		button('Edit', () => { form.hidden = false; form.querySelector('input').focus(); }, '', { id: 'edit-webhook' }),
		button(wh.active ? 'Disable' : 'Enable', (ev) => run(ev.currentTarget, async () => {
			await api('PATCH', `/webhooks/${enc(wh.id)}`, { active: !wh.active });
			toast(wh.active ? 'Webhook disabled: its entrypoints answer 410' : 'Webhook enabled');
			await reload();
		}), '', { id: 'toggle-webhook' }),
		button('Delete', async (ev) => {
			const btn = ev.currentTarget;
			const ok = await confirmDialog(`Delete webhook ${wh.name}?`,
				'Its entrypoints stop answering at once, and its event log (every event and delivery) is deleted. This cannot be undone.',
				'Delete webhook');
			if (!ok) return;
			// A change heard while the webhook goes would refetch it: 404.
			const view = state.view;
			unwatch();
			const resume = () => {
				if (state.view === null && view) state.view = view;
			};
			const deleted = await run(btn, async () => {
				await api('DELETE', `/webhooks/${enc(wh.id)}`);
				return true;
			});
			if (!deleted) return resume();
			toast(`Webhook ${wh.name} deleted`);
			location.hash = '#/';
		}, 'danger', { id: 'delete-webhook' }),
	];
	const form = ro ? null : webhookForm(wh, async (body, btn) => {
		await run(btn, async () => {
			await api('PATCH', `/webhooks/${enc(wh.id)}`, body);
			toast('Saved');
			await reload();
		});
	});
	if (form) form.hidden = true;
	put(box,
		el('div', { class: 'page-head' },
			el('h1', {}, wh.name, ' ',
				wh.active ? chip('active', 'st-on') : chip('disabled', 'st-off'),
				ro ? chip('Caddyfile', 'st-ro') : null),
			el('div', { class: 'actions' }, actions)),
		ro ? el('p', { class: 'note', id: 'read-only-note' },
			'Declared in the Caddyfile, which owns it: change it there and reload Caddy. Its events can be read and redelivered here.') : null,
		el('p', { class: 'meta muted' },
			wh.description ? [el('span', {}, wh.description), ' · '] : null,
			'id ', mono(wh.id), ' · created ', when(wh.created_at),
			' · events kept ', wh.retention_days ? `${wh.retention_days} days` : 'forever',
			wh.dedup ? [' · ', el('span', { id: 'webhook-dedup', title: 'A request whose id was seen within the window is answered with the first event’s id; nothing is stored or delivered.' },
				'deduplicated by ', wh.dedup.kind === 'header' ? 'header ' : '', el('code', {}, wh.dedup.source),
				' for ', shortDuration(wh.dedup.window || '24h'))] : null,
			wh.user_id ? [' · owner ', mono(shortID(wh.user_id), wh.user_id)] : null),
		form);
}

function drawEntrypoints(box, wh, reload) {
	const ro = wh.read_only;
	const base = el('input', { id: 'entrypoint-base', value: entrypointBase(), spellcheck: 'false', class: 'mono' });
	const keyIn = el('input', { id: 'entrypoint-key', placeholder: 'blank: a random key', autocomplete: 'off', class: 'mono' });
	// Holders of an API key cannot choose keys: theirs are generated.
	const chooseKey = state.mode !== 'tenant';
	const addForm = el('form', { class: 'panel form inline', id: 'add-entrypoint-form', hidden: true },
		chooseKey ? field('Key', keyIn, 'The last path segment of the URL.') : el('p', { class: 'muted' }, 'The new entrypoint gets a random key.'),
		el('div', { class: 'buttons' },
			el('button', { type: 'submit', class: 'primary', id: 'add-entrypoint-save' }, 'Add entrypoint'),
			button('Cancel', () => (addForm.hidden = true))));
	addForm.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const key = chooseKey ? keyIn.value.trim() : '';
		run(ev.submitter, async () => {
			await api('POST', `/webhooks/${enc(wh.id)}/entrypoints`, key ? { key } : {});
			toast('Entrypoint added');
			await reload();
		});
	});
	const table = el('div');
	const drawTable = () => {
		const b = base.value.trim();
		if (wh.entrypoints.length === 0) {
			put(table, el('div', { class: 'empty' }, el('p', {}, 'No entrypoints: this webhook cannot receive anything.'),
				ro ? null : el('p', { class: 'muted' }, 'Add one with Add entrypoint.')));
			return;
		}
		put(table, el('table', { class: 'grid' },
			el('thead', {}, el('tr', {}, el('th', {}, 'URL'), el('th', {}, 'Status'), el('th', {}, 'Created'), ro ? null : el('th', { class: 'right' }, ''))),
			el('tbody', {}, wh.entrypoints.map((e) => {
				const url = b + e.key;
				return el('tr', { dataset: { entrypointId: e.id, key: e.key }, class: e.active ? '' : 'inactive' },
					el('td', {}, el('div', { class: 'url' },
						el('code', { class: 'entrypoint-url' }, url),
						button('Copy', (ev) => copy(url, ev.currentTarget), 'link small'))),
					el('td', {}, e.displaced
						? chip('displaced', 'st-off', 'The Caddyfile declares this key, which it owns: this entrypoint receives nothing. Delete it, or enable it once the key is free.')
						: e.active ? chip('active', 'st-on') : chip('disabled: answers 410', 'st-off')),
					el('td', {}, when(e.created_at)),
					ro ? null : el('td', { class: 'right nowrap' },
						button(e.active ? 'Disable' : 'Enable', (ev) => run(ev.currentTarget, async () => {
							await api('PATCH', `/webhooks/${enc(wh.id)}/entrypoints/${enc(e.id)}`, { active: !e.active });
							await reload();
						}), 'small toggle-entrypoint'),
						button('Delete', async (ev) => {
							const btn = ev.currentTarget;
							if (!await confirmDialog('Delete this entrypoint?', `${url} will answer 404 from now on. Events it already received are kept.`, 'Delete entrypoint')) return;
							await run(btn, async () => {
								await api('DELETE', `/webhooks/${enc(wh.id)}/entrypoints/${enc(e.id)}`);
								toast('Entrypoint deleted');
								await reload();
							});
						}, 'small danger delete-entrypoint')));
			}))));
	};
	const reset = button('Reset', () => {
		localStorage.removeItem(BASE_ITEM);
		base.value = defaultEntrypointBase();
		reset.hidden = true;
		drawTable();
	}, 'link small', { id: 'entrypoint-base-reset', title: 'Go back to the default prefix', hidden: !localStorage.getItem(BASE_ITEM) });
	base.addEventListener('input', () => {
		const v = base.value.trim();
		if (v && v !== defaultEntrypointBase()) localStorage.setItem(BASE_ITEM, v);
		else localStorage.removeItem(BASE_ITEM);
		reset.hidden = !localStorage.getItem(BASE_ITEM);
		drawTable();
	});
	drawTable();
	const pub = state.settings && state.settings.public_url;
	put(box,
		el('div', { class: 'section-head' }, el('h2', {}, 'Entrypoints'),
			ro ? null : button('Add entrypoint', () => { addForm.hidden = false; if (chooseKey) keyIn.focus(); }, '', { id: 'add-entrypoint' })),
		el('div', { class: 'base-url' },
			el('label', { for: 'entrypoint-base' }, 'URL prefix'), base, reset,
			el('span', { class: 'help', id: 'entrypoint-base-help' },
				'An entrypoint’s URL is your site’s address, the path its ', el('code', {}, 'webhooker'),
				' directive serves, then the key. ',
				pub
					? ['The prefix comes from the server’s ', el('code', {}, 'public_url'), ' (', el('code', {}, pub), ')']
					: ['The prefix defaults to this page’s origin + /hooks/ (for ', el('code', {}, 'webhooker /hooks/*'), ')',
						state.mode === 'admin' ? ', but this page is on Caddy’s admin endpoint, not on your site: set it to your site’s address, or set public_url in the webhooker option' : ''],
				'. Edits are remembered in this browser.')),
		addForm,
		table);
}

async function copy(text, btn) {
	try {
		await navigator.clipboard.writeText(text);
		toast('Copied');
	} catch {
		// No clipboard access (an insecure origin, or denied): select it instead.
		const code = btn.parentElement.querySelector('code');
		const r = document.createRange();
		r.selectNodeContents(code);
		getSelection().removeAllRanges();
		getSelection().addRange(r);
		toast('Selected: press Ctrl+C to copy');
	}
}

function destination(t) {
	if (t.type === 'http') return el('code', { class: 'dest' }, t.url);
	if (t.type === 'database') return el('span', { class: 'muted' }, 'kept in the event log only');
	if (t.type === 'log') return el('span', { class: 'muted' }, 'written to Caddy’s log');
	return el('span', { class: 'muted' }, t.url || '—');
}

// targetFilter shows a target's filter under its destination: only the
// events it matches get a delivery to the target.
function targetFilter(t) {
	if (!t.filter) return null;
	return el('div', { class: 'target-filter small', title: 'Only the events this CEL expression matches get a delivery to this target; the others are stored all the same.' },
		el('span', { class: 'muted' }, 'filter '), el('code', {}, t.filter));
}

function deliverySettings(t) {
	if (t.type !== 'http') return el('span', { class: 'muted' }, '—');
	const o = t.options || {};
	const parts = [
		o.max_retries != null ? `${o.max_retries} retries` : 'default retries',
		o.timeout ? `timeout ${o.timeout}` : null,
		o.backoff_initial ? `first retry after ${o.backoff_initial}` : null,
		o.rate_limit ? `at most ${o.rate_limit.events} per ${o.rate_limit.window}` : null,
		o.max_in_flight != null ? `${o.max_in_flight} in flight at most` : null,
		o.ordered ? 'in order, one at a time' : null,
		o.headers && Object.keys(o.headers).length ? `${Object.keys(o.headers).length} headers` : null,
	].filter(Boolean);
	return el('span', { class: 'small' }, parts.join(' · '));
}

// targetLine shows where an ordered target's line stands: the delivery at
// its head, which every other open one waits for, and how many are open. A
// retrying head is failing and holds the line until it is delivered, gives
// up or is cancelled: that is said in words, with a link to its event.
function targetLine(wh, t) {
	if (t.line_error) return el('div', { class: 'target-line small st-failed' }, `line unreadable: ${t.line_error}`);
	const l = t.line;
	if (!l) return null;
	const h = l.head;
	const waiting = l.open - 1;
	const event = el('a', { href: `#/webhooks/${enc(wh.id)}/events/${enc(h.event_id)}`, class: 'line-head' }, 'event ' + shortID(h.event_id));
	if (h.status !== 'retrying') {
		return el('div', { class: 'target-line small muted' }, `in order: ${l.open} open, next `, event);
	}
	const err = h.last_error ? ` (${h.last_error})` : '';
	return el('div', { class: 'target-line small', title: 'An ordered target sends one delivery at a time: the rest wait until this one is delivered, gives up or is cancelled.' },
		chip('held', 'st-retrying'), ` ${waiting} waiting behind `, event, `: attempt ${h.attempts} failed${err}`,
		h.next_attempt_at ? [', next try ', when(h.next_attempt_at, true)] : null);
}

function circuit(t) {
	if (t.type !== 'http' || !t.circuit) return el('span', { class: 'muted' }, '—');
	const cls = { closed: 'st-on', open: 'st-failed', 'half-open': 'st-retrying' }[t.circuit] || '';
	const title = { closed: 'Deliveries go ahead', open: 'Too many failures in a row: deliveries wait for the cooldown', 'half-open': 'Probing the target' }[t.circuit];
	return chip(t.circuit, cls, title);
}

// pauseButton pauses a target (its deliveries wait, none is attempted or
// failed) or resumes it (what waited is sent).
function pauseButton(wh, t, reload) {
	const verb = t.paused ? 'Resume' : 'Pause';
	return button(verb, (ev) => run(ev.currentTarget, async () => {
		if (t.paused) await api('POST', `/webhooks/${enc(wh.id)}/targets/${enc(t.id)}/resume`, {});
		else await api('POST', `/webhooks/${enc(wh.id)}/targets/${enc(t.id)}/pause`, {});
		toast(t.paused ? `Target ${t.name} resumed: waiting deliveries go now` : `Target ${t.name} paused: its deliveries wait`);
		await reload();
	}), 'small pause-target', {
		'aria-label': `${verb} target ${t.name}`,
		title: t.paused ? 'Send what waited, and deliver new events again' : 'Hold its deliveries (nothing fails) until you resume it',
	});
}

function drawTargets(box, wh, reload) {
	const ro = wh.read_only;
	const formBox = el('div');
	const openForm = (t) => {
		const f = targetForm(wh, t, async () => { put(formBox); await reload(); }, () => put(formBox));
		put(formBox, f);
		f.querySelector('input').focus();
	};
	let body;
	if (wh.targets.length === 0) {
		body = el('div', { class: 'empty' }, el('p', {}, 'No targets: events are stored, and go nowhere else.'),
			ro ? null : el('p', { class: 'muted' }, 'Add one with Add target.'));
	} else {
		body = el('table', { class: 'grid' },
			el('thead', {}, el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'Type'), el('th', {}, 'Destination'),
				el('th', {}, 'Delivery'), el('th', {}, 'Status'), el('th', {}, 'Circuit'), el('th', {}, el('span', { class: 'sr-only' }, 'Actions')))),
			el('tbody', {}, wh.targets.map((t) => el('tr', { dataset: { targetId: t.id, name: t.name, paused: t.paused ? 'true' : 'false' }, class: t.active ? '' : 'inactive' },
				el('td', { class: 'strong' }, t.name),
				el('td', {}, t.type),
				el('td', {}, destination(t), targetFilter(t)),
				el('td', {}, deliverySettings(t), targetLine(wh, t)),
				el('td', {}, t.active ? chip('active', 'st-on') : chip('disabled', 'st-off'),
					t.paused ? [' ', chip('paused', 'st-paused target-paused', 'Its deliveries wait, nothing fails: they go when you resume it')] : null),
				el('td', {}, circuit(t)),
				el('td', { class: 'right nowrap' },
					// Pausing is runtime state, not configuration: it is offered
					// for the Caddyfile's webhooks too.
					t.active || t.paused ? pauseButton(wh, t, reload) : null,
					ro ? null : button('Edit', () => openForm(t), 'small edit-target'),
					ro ? null : button(t.active ? 'Disable' : 'Enable', (ev) => run(ev.currentTarget, async () => {
						await api('PATCH', `/webhooks/${enc(wh.id)}/targets/${enc(t.id)}`, { active: !t.active });
						toast(t.active ? `Target ${t.name} disabled: new events skip it` : `Target ${t.name} enabled`);
						await reload();
					}), 'small toggle-target', { title: t.active ? 'New events skip it, and its open deliveries fail: to hold them, Pause instead' : null }),
					ro ? null : button('Delete', async (ev) => {
						const btn = ev.currentTarget;
						if (!await confirmDialog(`Delete target ${t.name}?`, 'New events will not go to it. Its past deliveries stay in the event log.', 'Delete target')) return;
						await run(btn, async () => {
							await api('DELETE', `/webhooks/${enc(wh.id)}/targets/${enc(t.id)}`);
							toast(`Target ${t.name} deleted`);
							await reload();
						});
					}, 'small danger delete-target'))))));
	}
	put(box,
		el('div', { class: 'section-head' }, el('h2', {}, 'Targets'),
			ro ? null : button('Add target', () => openForm(null), '', { id: 'add-target' })),
		formBox,
		body);
}

// targetForm adds (t null) or edits a target. Options the form does not
// show (breaker settings, rate_limit, max_in_flight, ordered) are kept as they are; headers are left out of the
// change, which keeps them: the API shows their values masked.
function targetForm(wh, t, done, cancel) {
	const o = (t && t.options) || {};
	const name = el('input', { id: 'target-name', required: true, value: t ? t.name : '', autocomplete: 'off' });
	const type = el('select', { id: 'target-type' },
		['http', 'database', 'log'].map((v) => el('option', { value: v, selected: (t ? t.type : 'http') === v }, v)));
	const url = el('input', { id: 'target-url', type: 'url', value: t && t.url ? t.url : '', placeholder: 'https://…', class: 'mono' });
	const retries = el('input', { id: 'target-max-retries', type: 'number', min: '0', step: '1', value: o.max_retries != null ? String(o.max_retries) : '', placeholder: 'default (10)' });
	const timeout = el('input', { id: 'target-timeout', value: o.timeout || '', placeholder: 'default', class: 'mono' });
	const backoff = el('input', { id: 'target-backoff', value: o.backoff_initial || '', placeholder: 'default (5s)', class: 'mono' });
	const active = el('input', { id: 'target-active', type: 'checkbox', checked: t ? t.active : true });
	const filter = el('textarea', { id: 'target-filter', rows: '2', class: 'mono', maxlength: '4096', spellcheck: 'false',
		placeholder: 'every event, e.g. header["X-Github-Event"] == "push" && body.ref == "refs/heads/main"' });
	filter.value = (t && t.filter) || '';
	const httpOnly = el('div', { class: 'http-only' },
		field('URL', url, 'Events are POSTed here with their original body and content type.'),
		el('div', { class: 'row' },
			field('Max retries', retries, '0: one attempt only.'),
			field('Timeout', timeout, 'Per attempt, e.g. 10s.'),
			field('First retry after', backoff, 'Doubles each time, e.g. 2s.')));
	const sync = () => (httpOnly.hidden = type.value !== 'http');
	type.addEventListener('change', sync);
	sync();
	const save = el('button', { type: 'submit', class: 'primary', id: 'save-target' }, t ? 'Save target' : 'Add target');
	const form = el('form', { class: 'panel form', id: 'target-form' },
		el('h2', {}, t ? `Edit target ${t.name}` : 'New target'),
		el('div', { class: 'row' }, field('Name', name), field('Type', type, 'http forwards, database keeps, log writes to Caddy’s log.')),
		httpOnly,
		field('Filter', filter, 'A CEL expression over method, path, query, header (canonical names) and body (JSON): only the events it matches get a delivery. Empty: every event.'),
		el('label', { class: 'check' }, active, ' Active'),
		el('div', { class: 'buttons' }, save, button('Cancel', cancel)));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const body = { name: name.value.trim(), type: type.value, active: active.checked, filter: filter.value.trim() };
		if (type.value === 'http') {
			body.url = url.value.trim();
			const opts = { ...o };
			delete opts.headers;
			delete opts.max_retries;
			delete opts.timeout;
			delete opts.backoff_initial;
			if (retries.value !== '') opts.max_retries = parseInt(retries.value, 10);
			if (timeout.value.trim()) opts.timeout = timeout.value.trim();
			if (backoff.value.trim()) opts.backoff_initial = backoff.value.trim();
			body.options = opts;
		}
		run(save, async () => {
			if (t) await api('PATCH', `/webhooks/${enc(wh.id)}/targets/${enc(t.id)}`, body);
			else await api('POST', `/webhooks/${enc(wh.id)}/targets`, body);
			toast(t ? 'Target saved' : `Target ${body.name} added`);
			await done();
		});
	});
	return form;
}

// ---------- event log ----------

// overall is an event's status at a glance: the worst of its deliveries.
function overall(deliveries) {
	if (!deliveries || deliveries.length === 0) return 'none';
	for (const s of STATUSES) if (deliveries.some((d) => d.status === s)) return s;
	return deliveries[0].status;
}

function statusChip(status, title) {
	if (status === 'none') {
		return chip('no delivery', 'st-none', title || 'No delivery: when it arrived, the webhook had no active target, or no target’s filter matched it');
	}
	return chip(status, 'st-' + status, title);
}

// deliveryHeld tells why an open (pending or retrying) delivery is not
// being attempted, if something holds it: its target is paused, or the
// target's circuit breaker is open. null when nothing holds it.
function deliveryHeld(d, target) {
	if (d.status !== 'pending' && d.status !== 'retrying') return null;
	if (target && target.paused) return 'paused';
	if (target && target.circuit === 'open') return 'circuit';
	return null;
}

// deliveryExplained says where an open delivery stands, in words, with the
// time of its next try counting down: "held: circuit open — next try in 25 s".
function deliveryExplained(d, target) {
	const held = deliveryHeld(d, target);
	if (held === 'paused') return el('span', { class: 'held-note' }, 'paused — resumes when you resume the target');
	const next = d.next_attempt_at ? when(d.next_attempt_at, true) : null;
	if (held === 'circuit') {
		return el('span', { class: 'held-note' }, 'held: circuit open — ', next ? ['next try ', next] : 'tried again after the cooldown');
	}
	if (d.status === 'retrying') return el('span', {}, next ? ['next try ', next] : 'retry due');
	if (d.status === 'pending') return el('span', {}, d.attempts ? 'queued for its next try' : 'not attempted yet');
	return null;
}

function deliveryTitle(d, target) {
	const name = d.target_name || d.target_id;
	const held = deliveryHeld(d, target);
	let why = '';
	if (held === 'paused') why = ' — paused: resumes when you resume the target';
	else if (held === 'circuit') why = ` — held: circuit open, next try ${fmtDue(d.next_attempt_at)} (${fmtTime(d.next_attempt_at)})`;
	else if (d.status === 'retrying' && d.next_attempt_at) why = ` — next try ${fmtDue(d.next_attempt_at)} (${fmtTime(d.next_attempt_at)})`;
	return `${name}: ${d.status} after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}${d.redelivery ? ' (a redelivery)' : ''}${why}${d.last_error ? ' — ' + d.last_error : ''}`;
}

// deliveryChip is a delivery in an event's row: its target, its status
// (or why it is held), and whether it is a redelivery.
function deliveryChip(d, target) {
	const held = deliveryHeld(d, target);
	const word = held === 'paused' ? 'paused' : held === 'circuit' ? 'held' : d.status;
	return chip([
		d.target_name || shortID(d.target_id), ' ', el('span', { class: 'type' }, word),
		d.redelivery ? el('span', { class: 'type redelivery-mark' }, '· redelivery') : null,
	], 'st-' + d.status + (held ? ' held' : ''), deliveryTitle(d, target));
}

// The event log's filters, as the API takes them and as the page's hash
// keeps them: status, target, from and to (RFC 3339), q.
const FILTERS = ['status', 'target', 'from', 'to', 'q'];

function filtersFrom(query) {
	const f = {};
	for (const k of FILTERS) f[k] = (query && query.get(k)) || '';
	if (!STATUSES.includes(f.status)) f.status = '';
	for (const k of ['from', 'to']) if (f[k] && isNaN(new Date(f[k]).getTime())) f[k] = '';
	return f;
}

function filterHash(whID, f) {
	const q = new URLSearchParams();
	for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
	const qs = q.toString();
	return `#/webhooks/${enc(whID)}${qs ? '?' + qs : ''}`;
}

// A datetime-local input holds a local time without a zone; the API and
// the hash hold RFC 3339 (UTC), the same for whoever opens the link.
function isoToLocalInput(iso) {
	if (!iso) return '';
	const d = new Date(iso);
	if (isNaN(d.getTime())) return '';
	return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function localInputToISO(v) {
	if (!v) return '';
	const d = new Date(v); // a date-time without a zone is local time
	return isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.000Z$/, 'Z');
}

function targetOptions(select, wh, anyLabel) {
	const value = select.value;
	put(select,
		el('option', { value: '' }, anyLabel),
		(wh.targets || []).map((t) => el('option', { value: t.id }, t.name + (t.paused ? ' (paused)' : t.active ? '' : ' (disabled)'))));
	if (value && !(wh.targets || []).some((t) => t.id === value)) {
		select.append(el('option', { value }, 'deleted target ' + shortID(value)));
	}
	select.value = value;
}

function eventLog(box, wh, gen, query) {
	const f = filtersFrom(query);
	const status = el('select', { id: 'event-filter', name: 'status' },
		el('option', { value: '' }, 'all events'),
		STATUSES.map((s) => el('option', { value: s }, `with a ${s} delivery`)));
	status.value = f.status;
	const target = el('select', { id: 'event-target', name: 'target' });
	targetOptions(target, wh, 'to any target');
	if (f.target && !target.querySelector(`option[value="${CSS.escape(f.target)}"]`)) target.append(el('option', { value: f.target }, 'target ' + shortID(f.target)));
	target.value = f.target;
	const from = el('input', { id: 'event-from', name: 'from', type: 'datetime-local', step: '1', value: isoToLocalInput(f.from) });
	const to = el('input', { id: 'event-to', name: 'to', type: 'datetime-local', step: '1', value: isoToLocalInput(f.to) });
	const search = el('input', {
		id: 'event-search', name: 'q', type: 'search', value: f.q, maxlength: '200', spellcheck: 'false',
		placeholder: 'Event id, or text in the body', autocomplete: 'off',
	});
	const clear = button('Clear filters', () => {
		status.value = target.value = from.value = to.value = search.value = '';
		apply();
	}, 'link small', { id: 'clear-filters' });
	const filters = el('form', { class: 'filters', id: 'event-filters', role: 'search', 'aria-label': 'Filter events' },
		el('div', { class: 'filter' }, el('label', { for: 'event-filter' }, 'Show'), status),
		el('div', { class: 'filter' }, el('label', { for: 'event-target' }, 'Target'), target),
		el('div', { class: 'filter' }, el('label', { for: 'event-from' }, 'Received from'), from),
		el('div', { class: 'filter' }, el('label', { for: 'event-to' }, 'to (not included)'), to),
		el('div', { class: 'filter grow' }, el('label', { for: 'event-search' }, 'Search'),
			el('div', { class: 'search' }, search, el('button', { type: 'submit', id: 'event-search-go' }, 'Search'))),
		el('div', { class: 'filter' }, clear));
	const bulk = button('Bulk redeliver…', () => openBulk(wh, f), '', {
		id: 'bulk-redeliver', title: 'Redeliver every event whose latest delivery matches a filter (after an outage)',
	});
	const table = el('div', { id: 'event-table' }, el('p', { class: 'muted' }, 'Loading events…'));
	const pager = el('div', { class: 'pager' });
	put(box,
		el('div', { class: 'section-head' }, el('h2', {}, 'Events'),
			el('div', { class: 'tools' }, liveBox(), bulk)),
		filters, table, pager);

	let before = ''; // '' is the newest page
	let cursors = []; // the cursors of the pages before this one, for Newer
	let seen = null; // the ids drawn last time, to mark new rows
	const active = () => FILTERS.some((k) => f[k]);
	const log = {
		async load() {
			const q = new URLSearchParams({ limit: String(EVENTS_PAGE) });
			if (before) q.set('before', before);
			for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
			const data = await api('GET', `/webhooks/${enc(wh.id)}/events?${q}`);
			if (gen !== state.gen) return;
			draw(data);
		},
		// setWebhook takes a fresh copy of the webhook: its targets name the
		// filter's choices and explain held deliveries.
		setWebhook(w) {
			wh = w;
			targetOptions(target, wh, 'to any target');
		},
	};
	const go = (cursor) => {
		before = cursor;
		seen = null;
		log.load().catch(showError);
	};
	const draw = (data) => {
		const events = data.events || [];
		clear.hidden = !active();
		if (events.length === 0) {
			put(table, el('div', { class: 'empty', id: 'no-events' },
				active()
					? [el('p', {}, 'No events match these filters.'), el('p', {}, button('Clear filters', () => clear.click(), 'link'))]
					: [el('p', {}, 'No events yet.'), el('p', { class: 'muted' }, 'POST a request to an entrypoint URL above: it shows up here within seconds.')]));
		} else {
			const previous = seen;
			seen = new Set(events.map((e) => e.id));
			put(table, el('table', { class: 'grid events' },
				el('thead', {}, el('tr', {},
					el('th', { class: 'shrink' }, 'Received'), el('th', { class: 'shrink' }, 'Status'), el('th', {}, 'Request'),
					el('th', { class: 'shrink' }, 'Content type'), el('th', { class: 'num shrink' }, 'Size'), el('th', {}, 'Deliveries'))),
				el('tbody', {}, events.map((e) => eventRow(wh, e, previous && !previous.has(e.id))))));
		}
		put(pager,
			cursors.length ? button('← Newest', () => { cursors = []; go(''); }, 'small', { id: 'newest-events' }) : null,
			cursors.length > 1 ? button('← Newer', () => go(cursors.pop()), 'small', { id: 'newer-events' }) : null,
			data.next_before ? button('Older →', () => { cursors.push(before); go(data.next_before); }, 'small', { id: 'older-events' }) : null);
	};
	// apply reads the filters into f and the hash (replaced, not pushed: a
	// filter is not a page to go back to), and shows the newest matches.
	const apply = () => {
		f.status = status.value;
		f.target = target.value;
		f.from = localInputToISO(from.value);
		f.to = localInputToISO(to.value);
		f.q = search.value.trim();
		history.replaceState(null, '', filterHash(wh.id, f));
		cursors = [];
		go('');
	};
	for (const input of [status, target, from, to]) input.addEventListener('change', apply);
	search.addEventListener('search', () => { if (search.value === '') apply(); }); // its clear button
	filters.addEventListener('submit', (ev) => {
		ev.preventDefault();
		apply();
	});
	clear.hidden = !active();
	return log;
}

function eventRow(wh, e, isNew) {
	const href = `#/webhooks/${enc(wh.id)}/events/${enc(e.id)}`;
	const st = overall(e.deliveries);
	const targetOf = (d) => (wh.targets || []).find((t) => t.id === d.target_id);
	const tr = el('tr', { dataset: { eventId: e.id, status: st }, class: 'clickable' + (isNew ? ' new' : '') },
		el('td', { class: 'nowrap' }, el('a', { href, class: 'event-link' }, fmtTime(e.received_at)),
			' ', el('span', { class: 'muted small' }, when(e.received_at))),
		el('td', {}, statusChip(st)),
		el('td', { class: 'req' }, el('span', { class: 'method' }, e.method), ' ', el('span', { class: 'mono' }, e.path)),
		el('td', { class: 'muted small nowrap' }, e.content_type || '—'),
		el('td', { class: 'num nowrap' }, fmtBytes(e.body_size)),
		el('td', {}, el('div', { class: 'chips' }, (e.deliveries || []).map((d) => deliveryChip(d, targetOf(d))))));
	tr.addEventListener('click', (ev) => {
		if (ev.target.closest('a, button') || getSelection().toString()) return;
		location.hash = href;
	});
	return tr;
}

// ---------- one event ----------

async function renderEvent(whID, evID) {
	const gen = state.gen;
	setCrumbs([['Webhooks', '#/'], [shortID(whID), `#/webhooks/${enc(whID)}`], ['event ' + shortID(evID)]]);
	put($('main'), el('p', { class: 'muted' }, 'Loading…'));
	let wh, ev;
	try {
		[wh, ev] = await Promise.all([api('GET', `/webhooks/${enc(whID)}`), api('GET', `/webhooks/${enc(whID)}/events/${enc(evID)}`)]);
	} catch (e) {
		if (gen !== state.gen) return;
		put($('main'), el('div', { class: 'empty' },
			el('p', {}, e.status === 404 ? 'This event does not exist (any more): it may have been pruned by retention, or its webhook deleted.' : 'The event could not be read.'),
			el('p', {}, el('a', { href: `#/webhooks/${enc(whID)}` }, 'Back to the webhook'))));
		showError(e);
		return;
	}
	if (gen !== state.gen) return;
	setCrumbs([['Webhooks', '#/'], [wh.name, `#/webhooks/${enc(whID)}`], ['event ' + shortID(evID)]]);

	const deliveries = el('section', { id: 'deliveries' });
	const redeliver = button('Redeliver', async (e) => {
		const btn = e.currentTarget;
		const active = new Set((wh.targets || []).filter((t) => t.active).map((t) => t.id));
		const open = openDeliveries(ev).filter((d) => active.has(d.target_id));
		if (open.length && !await confirmRedeliverOpen(open)) return;
		await run(btn, async () => {
			const res = await api('POST', `/webhooks/${enc(whID)}/events/${enc(evID)}/redeliver`, {});
			const n = (res.deliveries || []).length;
			toast(`Redelivery queued: ${n} deliver${n === 1 ? 'y' : 'ies'}`);
			await refresh();
		});
	}, 'primary', { id: 'redeliver', title: 'Send the event again to every active target' });

	// The webhook is read again too: its targets' pause and circuit states
	// explain the deliveries they hold.
	const refresh = async () => {
		const [freshWh, fresh] = await Promise.all([api('GET', `/webhooks/${enc(whID)}`), api('GET', `/webhooks/${enc(whID)}/events/${enc(evID)}`)]);
		if (gen !== state.gen) return;
		wh = freshWh;
		ev = fresh;
		drawDeliveries(deliveries, wh, ev, refresh);
	};

	const ep = (wh.entrypoints || []).find((x) => x.id === ev.entrypoint_id);
	put($('main'),
		el('div', { class: 'page-head' },
			el('h1', {}, 'Event ', mono(ev.id)),
			el('div', { class: 'actions' }, liveBox(), redeliver)),
		el('dl', { class: 'kv', id: 'event-summary' },
			kv('Received', [fmtTime(ev.received_at), ' ', el('span', { class: 'muted' }, '(', when(ev.received_at), ')')]),
			kv('Request', [el('span', { class: 'method' }, ev.method), ' ', mono(ev.path)]),
			kv('Query', ev.query ? mono('?' + ev.query) : el('span', { class: 'muted' }, 'none')),
			kv('Entrypoint', ep ? mono(ep.key) : mono(ev.entrypoint_id || '—')),
			kv('From', mono(ev.remote_addr || '—')),
			kv('Body', [ev.content_type || 'no content type', ', ', fmtBytes(ev.body_size)])),
		deliveries,
		el('section', { id: 'request-headers' }, el('h2', {}, 'Headers'), headersTable(ev.headers)),
		el('section', { id: 'request-body' }, el('h2', {}, 'Body'), bodyView(ev)));
	drawDeliveries(deliveries, wh, ev, refresh);
	// Deliveries in progress are followed as the stream reports them.
	watch(whID, refresh);
}

function kv(k, v) {
	return [el('dt', {}, k), el('dd', {}, v)];
}

function headersTable(headers) {
	const names = Object.keys(headers || {}).sort();
	if (names.length === 0) return el('p', { class: 'muted' }, 'No headers.');
	const masked = names.some((n) => headers[n].includes(REDACTED));
	return [
		el('table', { class: 'grid kvtable' }, el('tbody', {}, names.flatMap((n) =>
			headers[n].map((v) => el('tr', {}, el('th', { class: 'mono' }, n),
				v === REDACTED ? el('td', { class: 'muted' }, v) : el('td', { class: 'mono wrap' }, v)))))),
		masked ? el('p', { class: 'muted small' }, 'Credential headers are not shown. They are stored and forwarded as received.') : null,
	];
}

function bodyView(ev) {
	if (!ev.body_size) return el('p', { class: 'muted' }, 'Empty body.');
	if (ev.body_encoding === 'base64') {
		return [el('p', { class: 'muted small' }, 'Not UTF-8 text: shown as base64.'), el('pre', { class: 'body', id: 'event-body' }, ev.body)];
	}
	// Control characters (but tab and newlines) are shown as symbols, ␀ for NUL.
	let text = ev.body.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)));
	let note = null;
	try {
		const v = JSON.parse(ev.body);
		if (v !== null && typeof v === 'object') {
			text = JSON.stringify(v, null, 2);
			note = el('p', { class: 'muted small' }, 'JSON, pretty-printed.');
		}
	} catch {
		// not JSON: shown as sent
	}
	return [note, el('pre', { class: 'body', id: 'event-body' }, text)];
}

function drawDeliveries(box, wh, ev, refresh) {
	const ds = ev.deliveries || [];
	put(box, el('h2', {}, 'Deliveries'),
		ds.length === 0
			? el('div', { class: 'empty' }, el('p', {}, 'No deliveries: the webhook had no active target when this event came in.'))
			: ds.map((d) => deliveryCard(wh, ev, d, refresh)));
}

// openDeliveries are an event's deliveries still pending or retrying.
function openDeliveries(ev) {
	return (ev.deliveries || []).filter((d) => d.status === 'pending' || d.status === 'retrying');
}

// confirmRedeliverOpen warns before a redelivery would send an event to a
// target that its open delivery is still going to send it to: the target
// would receive it twice, under two delivery ids.
function confirmRedeliverOpen(open) {
	const names = [...new Set(open.map((d) => d.target_name || shortID(d.target_id)))].join(', ');
	return confirmDialog('Redeliver while a delivery is still open?',
		`The delivery to ${names} is still ${open.map((d) => d.status).includes('retrying') ? 'retrying' : 'pending'}: it will be sent anyway. ` +
		'Redelivering now sends the event a second time, as a new delivery. To send it now instead, use Retry now on that delivery.',
		'Redeliver anyway');
}

function deliveryCard(wh, ev, d, refresh) {
	const target = (wh.targets || []).find((t) => t.id === d.target_id);
	const name = d.target_name || (target ? target.name : 'deleted target');
	const isOpen = d.status === 'pending' || d.status === 'retrying';
	const again = target && target.active
		? button('Redeliver to this target', async (e) => {
			const btn = e.currentTarget;
			const open = openDeliveries(ev).filter((x) => x.target_id === d.target_id);
			if (open.length && !await confirmRedeliverOpen(open)) return;
			await run(btn, async () => {
				await api('POST', `/webhooks/${enc(wh.id)}/events/${enc(ev.id)}/redeliver`, { target_id: d.target_id });
				toast(`Redelivery to ${name} queued`);
				await refresh();
			});
		}, 'small redeliver-target', { 'aria-label': `Redeliver to target ${name}` })
		: el('span', { class: 'muted small' }, target ? 'target disabled: enable it to redeliver' : 'target deleted');
	// A paused target's deliveries wait for Resume, which sends them all.
	const retry = isOpen && !(target && target.paused) ? button('Retry now', (e) => run(e.currentTarget, async () => {
		await api('POST', `/webhooks/${enc(wh.id)}/deliveries/${enc(d.id)}/retry`, {});
		toast(`Delivery to ${name}: retrying now`);
		await refresh();
	}), 'small retry-delivery', {
		'aria-label': `Retry the delivery to ${name} now`,
		title: 'Attempt it now instead of waiting for its next try',
	}) : null;
	const cancel = isOpen ? button('Cancel', async (e) => {
		const btn = e.currentTarget;
		if (!await confirmDialog(`Cancel the delivery to ${name}?`,
			'It is not attempted again and becomes failed ("cancelled by the operator"). The event stays: you can redeliver it later.',
			'Cancel delivery')) return;
		await run(btn, async () => {
			await api('POST', `/webhooks/${enc(wh.id)}/deliveries/${enc(d.id)}/cancel`, {});
			toast(`Delivery to ${name} cancelled`);
			await refresh();
		});
	}, 'small danger cancel-delivery', { 'aria-label': `Cancel the delivery to ${name}` }) : null;
	const explained = deliveryExplained(d, target);
	const results = d.results || [];
	return el('div', { class: 'delivery panel', dataset: { deliveryId: d.id, status: d.status, held: deliveryHeld(d, target) || '', redelivery: d.redelivery ? 'true' : 'false' } },
		el('div', { class: 'delivery-head' },
			el('span', { class: 'strong' }, name),
			el('span', { class: 'muted' }, d.target_type || (target ? target.type : '')),
			statusChip(d.status),
			d.redelivery ? chip('redelivery', 'st-ro redelivery', 'An earlier delivery of this event to this target exists: this one was asked for again') : null,
			el('span', { class: 'muted small' }, `${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
				explained ? [' · ', explained] : null,
				d.next_attempt_at && isOpen ? [' (', fmtTime(d.next_attempt_at), ')'] : null,
				' · created ', fmtTime(d.created_at)),
			el('span', { class: 'grow' }),
			retry, cancel, again),
		d.last_error ? el('p', { class: 'error small' }, d.last_error) : null,
		results.length === 0
			? el('p', { class: 'muted small' }, d.status === 'pending' ? 'Not attempted yet.' : 'No attempts recorded.')
			: el('table', { class: 'grid attempts' },
				el('thead', {}, el('tr', {}, el('th', { class: 'num shrink' }, '#'), el('th', { class: 'shrink' }, 'Started'), el('th', { class: 'num shrink' }, 'Duration'),
					el('th', { class: 'shrink' }, 'Status'), el('th', {}, 'Error'), el('th', {}, 'Response'))),
				el('tbody', {}, results.map((r) => el('tr', { class: 'attempt', dataset: { attempt: String(r.attempt) } },
					el('td', { class: 'num' }, String(r.attempt)),
					el('td', { class: 'nowrap' }, fmtTime(r.started_at)),
					el('td', { class: 'num nowrap' }, fmtMS(r.duration_ms)),
					el('td', {}, r.status_code ? chip(String(r.status_code), r.status_code >= 200 && r.status_code < 300 ? 'st-delivered' : 'st-failed') : el('span', { class: 'muted' }, '—')),
					el('td', { class: 'wrap' }, r.error ? el('span', { class: 'error' }, r.error) : el('span', { class: 'muted' }, '—')),
					el('td', { class: 'wrap' }, responseExcerpt(r)))))));
}

function responseExcerpt(r) {
	if (!r.response_body) return el('span', { class: 'muted' }, '—');
	const text = r.response_body_encoding === 'base64' ? `(base64) ${r.response_body}` : r.response_body;
	const short = text.length > 300 ? text.slice(0, 300) + '…' : text;
	const pre = el('pre', { class: 'excerpt', title: text.length > 300 ? 'Click to show all' : null }, short);
	if (text.length > 300) pre.addEventListener('click', () => (pre.textContent = pre.textContent === short ? text : short));
	return pre;
}

// ---------- bulk redelivery ----------
// The dialog of index.html (#bulk-dialog): a filter prefilled from the event
// log's, Count (a dry run: "N events match"), then Redeliver N, which starts
// a job on the server and shows its progress. The job's progress is read on
// each change the stream reports for its webhook, and once a second while it
// runs and the dialog is open: never otherwise.

const bulk = { wh: null, counted: null, job: null, timer: 0, busy: false, again: false };

function bulkParams() {
	const p = { status: $('bulk-status').value };
	const target = $('bulk-target').value;
	if (target) p.target_id = target;
	const from = localInputToISO($('bulk-from').value);
	if (from) p.from = from;
	const to = localInputToISO($('bulk-to').value);
	if (to) p.to = to;
	return p;
}

function bulkRunning() {
	return !!(bulk.job && bulk.job.state === 'running');
}

// bulkRun runs an action of the dialog: its errors are shown in the
// dialog (the page's banner is behind it).
async function bulkRun(btn, fn) {
	const error = $('bulk-error');
	error.hidden = true;
	if (btn) btn.disabled = true;
	try {
		await fn();
	} catch (e) {
		if (e instanceof ApiError && e.status === 401) {
			$('bulk-dialog').close();
			showError(e);
			return;
		}
		error.textContent = e instanceof Error ? e.message : String(e);
		error.hidden = false;
	} finally {
		if (btn) btn.disabled = false;
		bulkButtons();
	}
}

// bulkButtons enables Redeliver only for a count of the filter as it is
// now, and nothing but Stop while a job runs.
function bulkButtons() {
	// Redelivering an open delivery duplicates it: say so before Count.
	const st = $('bulk-status').value;
	$('bulk-warning').hidden = st !== 'retrying' && st !== 'pending';
	const running = bulkRunning();
	const c = bulk.counted;
	const fresh = c && c.key === JSON.stringify(bulkParams());
	$('bulk-count').disabled = running;
	$('bulk-start').disabled = running || !fresh || c.matched === 0;
	$('bulk-start').textContent = fresh && c.matched > 0 ? `Redeliver ${c.matched}` : 'Redeliver';
	$('bulk-stop').hidden = !running;
}

function bulkFilterChanged() {
	if (bulk.counted && bulk.counted.key !== JSON.stringify(bulkParams())) {
		bulk.counted = null;
		$('bulk-result').textContent = 'The filter changed: count again.';
	}
	bulkButtons();
}

function openBulk(wh, f) {
	if (!bulk.wh || bulk.wh.id !== wh.id) bulk.job = null;
	bulk.wh = wh;
	const target = $('bulk-target');
	target.value = '';
	targetOptions(target, wh, 'all targets');
	target.value = f.target && [...target.options].some((o) => o.value === f.target) ? f.target : '';
	$('bulk-status').value = f.status || 'failed';
	$('bulk-from').value = isoToLocalInput(f.from);
	$('bulk-to').value = isoToLocalInput(f.to);
	const note = $('bulk-note');
	note.textContent = f.q ? `The search (“${f.q}”) is not part of a bulk redelivery: it selects by status, target and time only.` : '';
	note.hidden = !f.q;
	bulk.counted = null;
	$('bulk-result').textContent = 'Count the matching events first.';
	$('bulk-error').hidden = true;
	drawJob();
	bulkButtons();
	$('bulk-dialog').showModal();
	$('bulk-count').focus();
	if (bulkRunning()) followJob(0);
}

async function bulkCount() {
	const p = bulkParams();
	const key = JSON.stringify(p);
	const res = await api('POST', `/webhooks/${enc(bulk.wh.id)}/redeliver`, { ...p, dry_run: true });
	const n = res && typeof res.matched === 'number' ? res.matched : 0;
	bulk.counted = { key, matched: n };
	$('bulk-result').textContent = `${n} event${n === 1 ? '' : 's'} match`;
}

async function bulkStart() {
	const p = bulkParams();
	if (!bulk.counted || bulk.counted.key !== JSON.stringify(p)) throw new Error('The filter changed since the count: count again.');
	const rate = Number($('bulk-rate').value);
	if (!Number.isInteger(rate) || rate < 1 || rate > 1000) throw new Error('Rate: a whole number of events per second, from 1 to 1000.');
	const res = await api('POST', `/webhooks/${enc(bulk.wh.id)}/redeliver`, { ...p, rate });
	bulk.job = res.job;
	bulk.counted = null;
	$('bulk-result').textContent = '';
	drawJob();
	followJob(JOB_FOLLOW_MS);
}

function drawJob() {
	const j = bulk.job;
	$('bulk-job').hidden = !j;
	if (!j) return;
	const matched = j.matched || 0;
	const progress = $('bulk-progress');
	progress.max = Math.max(matched, 1);
	progress.value = Math.min((j.redelivered || 0) + (j.errors || 0), progress.max);
	const of = `${j.redelivered || 0} of ${matched}`;
	const text = {
		running: `Redelivering: ${of} so far`,
		done: `Done: ${of} redelivered`,
		failed: `Stopped by an error: ${of} redelivered`,
		cancelled: `Stopped: ${of} redelivered`,
	}[j.state] || `${j.state}: ${of} redelivered`;
	$('bulk-job-text').textContent = text +
		(j.errors ? `, ${j.errors} error${j.errors === 1 ? '' : 's'}` : '') +
		(j.last_error ? ` — last error: ${j.last_error}` : '');
	$('bulk-job').dataset.state = j.state;
	bulkButtons();
}

// followJob reads the job after ms, then again while it runs and the
// dialog is open; the timer is the only one of the page that asks the
// server anything, and it stops with the job.
function followJob(ms) {
	clearTimeout(bulk.timer);
	bulk.timer = 0;
	if (!bulkRunning() || !$('bulk-dialog').open) return;
	bulk.timer = setTimeout(fetchJob, ms);
}

async function fetchJob() {
	const j = bulk.job;
	if (!j) return;
	if (bulk.busy) {
		bulk.again = true;
		return;
	}
	bulk.busy = true;
	try {
		const fresh = await api('GET', `/webhooks/${enc(j.webhook_id || bulk.wh.id)}/redeliver/${enc(j.id)}`);
		if (bulk.job !== j) return;
		bulk.job = fresh;
		drawJob();
		if (fresh.state !== 'running') {
			toast($('bulk-job-text').textContent);
			changed(fresh.webhook_id || bulk.wh.id);
		}
	} catch (e) {
		if (bulk.job === j) {
			$('bulk-error').textContent = `Reading the job: ${e.message}`;
			$('bulk-error').hidden = false;
			if (e.status === 404) {
				// A restart of the server ends its jobs (what was redelivered stays).
				bulk.job = null;
				drawJob();
				bulkButtons();
			}
		}
	} finally {
		bulk.busy = false;
		if (bulk.again) {
			bulk.again = false;
			fetchJob();
		} else {
			followJob(JOB_FOLLOW_MS);
		}
	}
}

// bulkChanged reads the running job at once when its webhook changes.
function bulkChanged(webhookID) {
	const j = bulk.job;
	if (!bulkRunning() || !$('bulk-dialog').open) return;
	if (webhookID && webhookID !== (j.webhook_id || bulk.wh.id)) return;
	clearTimeout(bulk.timer);
	fetchJob();
}

$('bulk-form').addEventListener('submit', (ev) => {
	ev.preventDefault(); // Enter in a field counts; it does not close the dialog
	if (!$('bulk-count').disabled) $('bulk-count').click();
});
for (const id of ['bulk-status', 'bulk-target', 'bulk-from', 'bulk-to']) {
	$(id).addEventListener('input', bulkFilterChanged);
	$(id).addEventListener('change', bulkFilterChanged);
}
$('bulk-count').addEventListener('click', (ev) => bulkRun(ev.currentTarget, bulkCount));
$('bulk-start').addEventListener('click', (ev) => bulkRun(ev.currentTarget, bulkStart));
$('bulk-stop').addEventListener('click', (ev) => bulkRun(ev.currentTarget, async () => {
	const j = bulk.job;
	await api('DELETE', `/webhooks/${enc(j.webhook_id || bulk.wh.id)}/redeliver/${enc(j.id)}`);
	await fetchJob();
}));
$('bulk-close').addEventListener('click', () => $('bulk-dialog').close());
$('bulk-dialog').addEventListener('close', () => {
	clearTimeout(bulk.timer);
	bulk.timer = 0;
	if (bulkRunning()) toast('The redelivery goes on: open Bulk redeliver again to follow it');
});

// ---------- start ----------

route();
