// The webhooker event-log UI. Plain JavaScript, no framework, no build step.
//
// Everything goes through the JSON API next to this page (/webhooker/…), with
// fetch(): state-changing requests carry Content-Type: application/json, so a
// cross-site page could only send them after a CORS preflight that is never
// granted. No cookies are used. On a webhooker_api site the API answers 401
// without a key: the page then asks for one and keeps it in this tab's
// sessionStorage only (never in a URL, never in localStorage).

const API = location.pathname.replace(/\/ui(\/.*)?$/, '');
const KEY_ITEM = 'webhooker.apiKey';
const REDACTED = '(redacted)'; // what the API shows for a secret it keeps
const BASE_ITEM = 'webhooker.entrypointBase'; // not a secret: a URL prefix
const POLL_MS = 3000;
const EVENTS_PAGE = 25;
const STATUSES = ['failed', 'retrying', 'pending', 'delivered'];

const $ = (id) => document.getElementById(id);

const state = {
	mode: '', // 'admin' (Caddy's admin endpoint) or 'tenant' (API key); '' until known
	gen: 0, // bumped on every navigation; stale async renders check it
	poll: null, // {fn, timer}
	filter: {}, // webhook id -> delivery status filter of its event log
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

function fmtAgo(iso) {
	if (!iso) return '—';
	const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
	if (s < 5) return 'just now';
	if (s < 60) return `${s} s ago`;
	if (s < 3600) return `${Math.floor(s / 60)} min ago`;
	if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
	return `${Math.floor(s / 86400)} d ago`;
}

// timeCell shows a time as "3 min ago", with the exact local time on hover.
function when(iso) {
	return el('time', { datetime: iso || '', title: fmtTime(iso) }, fmtAgo(iso));
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

async function api(method, path, body) {
	const headers = { Accept: 'application/json' };
	const key = sessionStorage.getItem(KEY_ITEM);
	if (key) headers.Authorization = 'Bearer ' + key;
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
		d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
		d.showModal();
		$('confirm-cancel').focus();
	});
}

// ---------- session ----------

function setMode(mode) {
	state.mode = mode;
	if (mode === '') document.body.removeAttribute('data-mode');
	else document.body.dataset.mode = mode;
	const s = $('session');
	put(s);
	if (mode === 'admin') {
		s.append(el('span', { class: 'muted', title: 'Served by Caddy\'s admin endpoint: every webhook is shown.' }, 'Caddy admin endpoint'));
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
	stopPolling();
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

// ---------- polling ----------
// A page that shows live data polls while the tab is visible, and at once
// when it becomes visible again. Nothing is asked while it is hidden.

function startPolling(fn, ms) {
	stopPolling();
	const p = { fn, ms: ms || POLL_MS, timer: 0, busy: false };
	const tick = async () => {
		if (state.poll !== p) return;
		if (document.visibilityState === 'visible' && !p.busy) {
			p.busy = true;
			try {
				await fn();
			} catch (e) {
				if (state.poll === p) showError(e);
			} finally {
				p.busy = false;
			}
		}
		if (state.poll === p) p.timer = setTimeout(tick, p.ms);
	};
	p.tick = tick;
	state.poll = p;
	p.timer = setTimeout(tick, p.ms);
}

function stopPolling() {
	if (state.poll) clearTimeout(state.poll.timer);
	state.poll = null;
}

// pausePolling stops polling for an action that would make a poll fail (a
// delete), and returns what resumes it if the action fails.
function pausePolling() {
	const p = state.poll;
	const gen = state.gen;
	stopPolling();
	return () => {
		if (p && gen === state.gen && state.poll === null) startPolling(p.fn, p.ms);
	};
}

document.addEventListener('visibilitychange', () => {
	const p = state.poll;
	if (p && document.visibilityState === 'visible') {
		clearTimeout(p.timer);
		p.tick();
	}
	updateLive();
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

function route() {
	state.gen++;
	stopPolling();
	clearError();
	const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
	if (parts[0] === 'webhooks' && parts[1]) {
		if (parts[2] === 'events' && parts[3]) return renderEvent(parts[1], parts[3]);
		return renderWebhook(parts[1]);
	}
	return renderList();
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
	put($('main'),
		el('div', { class: 'page-head' }, el('h1', {}, 'Webhooks'), el('div', { class: 'actions' }, newBtn)),
		form,
		list,
	);
	const load = async () => {
		const data = await api('GET', '/webhooks?stats=true');
		if (gen !== state.gen) return;
		put(list, webhookTable(data.webhooks || []));
	};
	load().catch(showError);
	startPolling(load, POLL_MS * 2);
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
		chip([t.name, el('span', { class: 'type' }, t.type)],
			'target' + (t.active ? '' : ' st-off') + (t.circuit === 'open' ? ' st-failed' : ''),
			`${t.name}: ${t.type}${t.url ? ' → ' + t.url : ''}${t.active ? '' : ' (disabled)'}${t.circuit && t.circuit !== 'closed' ? ', circuit ' + t.circuit : ''}`)));
}

// health shows the deliveries of a webhook by status, problems first.
function health(st) {
	if (!st) return el('span', { class: 'muted' }, '—');
	const parts = STATUSES.filter((s) => st.deliveries && st.deliveries[s] > 0)
		.map((s) => chip(`${st.deliveries[s]} ${s}`, 'st-' + s));
	return parts.length ? el('div', { class: 'chips' }, parts) : el('span', { class: 'muted' }, 'none yet');
}

// webhookForm creates (wh null) or edits a webhook.
function webhookForm(wh, onSubmit, onCancel) {
	const name = el('input', { name: 'name', id: 'webhook-name', required: true, value: wh ? wh.name : '', autocomplete: 'off' });
	const desc = el('input', { name: 'description', id: 'webhook-description', value: wh ? wh.description || '' : '', autocomplete: 'off' });
	const ret = el('input', { name: 'retention_days', id: 'webhook-retention', type: 'number', min: '0', step: '1', value: wh ? String(wh.retention_days || 0) : '0' });
	const save = el('button', { type: 'submit', class: 'primary', id: wh ? 'save-webhook' : 'create-webhook' }, wh ? 'Save' : 'Create webhook');
	const form = el('form', { class: 'panel form', id: wh ? 'edit-webhook-form' : 'new-webhook-form' },
		el('h2', {}, wh ? 'Edit webhook' : 'New webhook'),
		field('Name', name),
		field('Description', desc, 'Optional.'),
		field('Keep events for (days)', ret, '0 keeps them forever.'),
		el('div', { class: 'buttons' }, save, button('Cancel', () => { form.hidden = true; if (onCancel) onCancel(); })),
		wh ? null : el('p', { class: 'muted small' }, 'The new webhook gets one entrypoint with a random key; add targets on its page.'));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		onSubmit({ name: name.value.trim(), description: desc.value.trim(), retention_days: parseInt(ret.value || '0', 10) }, save);
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

function entrypointBase() {
	return localStorage.getItem(BASE_ITEM) || location.origin + '/hooks/';
}

async function renderWebhook(id) {
	const gen = state.gen;
	setCrumbs([['Webhooks', '#/'], [shortID(id)]]);
	put($('main'), el('p', { class: 'muted' }, 'Loading…'));
	let wh;
	try {
		wh = await api('GET', `/webhooks/${enc(id)}`);
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

	const reload = async () => {
		const fresh = await api('GET', `/webhooks/${enc(id)}`);
		if (gen !== state.gen) return;
		draw(fresh);
	};
	const draw = (w) => {
		wh = w;
		drawWebhookHead(head, w, reload);
		drawEntrypoints(eps, w, reload);
		drawTargets(targets, w, reload);
	};
	draw(wh);

	const log = eventLog(events, wh, gen);
	await log.load().catch(showError);
	// The event list and the targets' circuit states stay current.
	startPolling(async () => {
		await log.load(true);
		const fresh = await api('GET', `/webhooks/${enc(id)}`);
		if (gen !== state.gen) return;
		if (JSON.stringify(fresh.targets) !== JSON.stringify(wh.targets)) {
			wh = fresh;
			drawTargets(targets, fresh, reload);
		}
	});
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
			const resume = pausePolling();
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
	base.addEventListener('input', () => {
		const v = base.value.trim();
		if (v && v !== location.origin + '/hooks/') localStorage.setItem(BASE_ITEM, v);
		else localStorage.removeItem(BASE_ITEM);
		drawTable();
	});
	drawTable();
	put(box,
		el('div', { class: 'section-head' }, el('h2', {}, 'Entrypoints'),
			ro ? null : button('Add entrypoint', () => { addForm.hidden = false; if (chooseKey) keyIn.focus(); }, '', { id: 'add-entrypoint' })),
		el('div', { class: 'base-url' },
			el('label', { for: 'entrypoint-base' }, 'URL prefix'), base,
			el('span', { class: 'help' },
				'An entrypoint’s URL is your site’s address, the path its ', el('code', {}, 'webhooker'),
				' directive serves, then the key. The prefix defaults to this page’s origin + /hooks/ (for ',
				el('code', {}, 'webhooker /hooks/*'), ')',
				state.mode === 'admin' ? ', but this page is on Caddy’s admin endpoint, not on your site: set it to your site’s address' : '',
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

function deliverySettings(t) {
	if (t.type !== 'http') return el('span', { class: 'muted' }, '—');
	const o = t.options || {};
	const parts = [
		o.max_retries != null ? `${o.max_retries} retries` : 'default retries',
		o.timeout ? `timeout ${o.timeout}` : null,
		o.backoff_initial ? `first retry after ${o.backoff_initial}` : null,
		o.headers && Object.keys(o.headers).length ? `${Object.keys(o.headers).length} headers` : null,
	].filter(Boolean);
	return el('span', { class: 'small' }, parts.join(' · '));
}

function circuit(t) {
	if (t.type !== 'http' || !t.circuit) return el('span', { class: 'muted' }, '—');
	const cls = { closed: 'st-on', open: 'st-failed', 'half-open': 'st-retrying' }[t.circuit] || '';
	const title = { closed: 'Deliveries go ahead', open: 'Too many failures in a row: deliveries wait for the cooldown', 'half-open': 'Probing the target' }[t.circuit];
	return chip(t.circuit, cls, title);
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
				el('th', {}, 'Delivery'), el('th', {}, 'Status'), el('th', {}, 'Circuit'), ro ? null : el('th', {}, ''))),
			el('tbody', {}, wh.targets.map((t) => el('tr', { dataset: { targetId: t.id, name: t.name }, class: t.active ? '' : 'inactive' },
				el('td', { class: 'strong' }, t.name),
				el('td', {}, t.type),
				el('td', {}, destination(t)),
				el('td', {}, deliverySettings(t)),
				el('td', {}, t.active ? chip('active', 'st-on') : chip('disabled', 'st-off')),
				el('td', {}, circuit(t)),
				ro ? null : el('td', { class: 'right nowrap' },
					button('Edit', () => openForm(t), 'small edit-target'),
					button(t.active ? 'Disable' : 'Enable', (ev) => run(ev.currentTarget, async () => {
						await api('PATCH', `/webhooks/${enc(wh.id)}/targets/${enc(t.id)}`, { active: !t.active });
						toast(t.active ? `Target ${t.name} disabled: new events skip it` : `Target ${t.name} enabled`);
						await reload();
					}), 'small toggle-target'),
					button('Delete', async (ev) => {
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
// show (breaker settings) are kept as they are; headers are left out of the
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
		el('label', { class: 'check' }, active, ' Active'),
		el('div', { class: 'buttons' }, save, button('Cancel', cancel)));
	form.addEventListener('submit', (ev) => {
		ev.preventDefault();
		const body = { name: name.value.trim(), type: type.value, active: active.checked };
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
	return chip(status === 'none' ? 'no targets' : status, 'st-' + status, title);
}

function eventLog(box, wh, gen) {
	const filter = el('select', { id: 'event-filter', 'aria-label': 'Delivery status' },
		el('option', { value: '' }, 'all events'),
		STATUSES.map((s) => el('option', { value: s }, `with a ${s} delivery`)));
	filter.value = state.filter[wh.id] || '';
	const live = el('span', { id: 'live', class: 'live muted' });
	const table = el('div', { id: 'event-table' }, el('p', { class: 'muted' }, 'Loading events…'));
	const pager = el('div', { class: 'pager' });
	put(box,
		el('div', { class: 'section-head' }, el('h2', {}, 'Events'),
			el('div', { class: 'tools' }, live, el('label', { for: 'event-filter', class: 'muted' }, 'Show'), filter)),
		table, pager);

	let before = ''; // '' is the newest page, the only one that refreshes itself
	let cursors = []; // the cursors of the pages before this one, for Newer
	let seen = null; // the ids drawn last time, to mark new rows
	const log = {
		// load reads the current page. The poller passes true: an older
		// page then holds still, so that its rows do not move under the reader.
		async load(polled) {
			if (polled && before !== '') return;
			const q = new URLSearchParams({ limit: String(EVENTS_PAGE) });
			if (before) q.set('before', before);
			if (filter.value) q.set('status', filter.value);
			const data = await api('GET', `/webhooks/${enc(wh.id)}/events?${q}`);
			if (gen !== state.gen) return;
			draw(data);
		},
	};
	const go = (cursor) => {
		before = cursor;
		seen = null;
		log.load().catch(showError);
	};
	const draw = (data) => {
		const events = data.events || [];
		if (events.length === 0) {
			put(table, el('div', { class: 'empty', id: 'no-events' },
				filter.value
					? el('p', {}, `No events with a ${filter.value} delivery.`)
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
		updateLive(before === '');
	};
	filter.addEventListener('change', () => {
		state.filter[wh.id] = filter.value;
		cursors = [];
		go('');
	});
	return log;
}

let liveNewest = true;
function updateLive(newest) {
	if (newest !== undefined) liveNewest = newest;
	const live = $('live');
	if (!live) return;
	if (!liveNewest) live.textContent = 'Older events: not refreshed';
	else if (document.visibilityState !== 'visible') live.textContent = 'Paused while the tab is hidden';
	else live.textContent = `● Live, every ${POLL_MS / 1000} s`;
	live.classList.toggle('on', liveNewest && document.visibilityState === 'visible');
}

function eventRow(wh, e, isNew) {
	const href = `#/webhooks/${enc(wh.id)}/events/${enc(e.id)}`;
	const st = overall(e.deliveries);
	const tr = el('tr', { dataset: { eventId: e.id, status: st }, class: 'clickable' + (isNew ? ' new' : '') },
		el('td', { class: 'nowrap' }, el('a', { href, class: 'event-link' }, fmtTime(e.received_at)),
			' ', el('span', { class: 'muted small' }, fmtAgo(e.received_at))),
		el('td', {}, statusChip(st)),
		el('td', { class: 'req' }, el('span', { class: 'method' }, e.method), ' ', el('span', { class: 'mono' }, e.path)),
		el('td', { class: 'muted small nowrap' }, e.content_type || '—'),
		el('td', { class: 'num nowrap' }, fmtBytes(e.body_size)),
		el('td', {}, el('div', { class: 'chips' }, (e.deliveries || []).map((d) =>
			chip([d.target_name || shortID(d.target_id), ' ', el('span', { class: 'type' }, d.status)], 'st-' + d.status,
				`${d.target_name || d.target_id}: ${d.status} after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}${d.last_error ? ' — ' + d.last_error : ''}`)))));
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
	const redeliver = button('Redeliver', (e) => run(e.currentTarget, async () => {
		const res = await api('POST', `/webhooks/${enc(whID)}/events/${enc(evID)}/redeliver`, {});
		const n = (res.deliveries || []).length;
		toast(`Redelivery queued: ${n} deliver${n === 1 ? 'y' : 'ies'}`);
		await refresh();
	}), 'primary', { id: 'redeliver', title: 'Send the event again to every active target' });

	const refresh = async () => {
		const fresh = await api('GET', `/webhooks/${enc(whID)}/events/${enc(evID)}`);
		if (gen !== state.gen) return;
		ev = fresh;
		drawDeliveries(deliveries, wh, ev, refresh);
	};

	const ep = (wh.entrypoints || []).find((x) => x.id === ev.entrypoint_id);
	put($('main'),
		el('div', { class: 'page-head' },
			el('h1', {}, 'Event ', mono(ev.id)),
			el('div', { class: 'actions' }, redeliver)),
		el('dl', { class: 'kv', id: 'event-summary' },
			kv('Received', [fmtTime(ev.received_at), ' ', el('span', { class: 'muted' }, '(' + fmtAgo(ev.received_at) + ')')]),
			kv('Request', [el('span', { class: 'method' }, ev.method), ' ', mono(ev.path)]),
			kv('Query', ev.query ? mono('?' + ev.query) : el('span', { class: 'muted' }, 'none')),
			kv('Entrypoint', ep ? mono(ep.key) : mono(ev.entrypoint_id || '—')),
			kv('From', mono(ev.remote_addr || '—')),
			kv('Body', [ev.content_type || 'no content type', ', ', fmtBytes(ev.body_size)])),
		deliveries,
		el('section', { id: 'request-headers' }, el('h2', {}, 'Headers'), headersTable(ev.headers)),
		el('section', { id: 'request-body' }, el('h2', {}, 'Body'), bodyView(ev)));
	drawDeliveries(deliveries, wh, ev, refresh);
	// Deliveries in progress are followed until they settle.
	startPolling(async () => {
		if (ev.deliveries.some((d) => d.status === 'pending' || d.status === 'retrying')) await refresh();
	}, 1500);
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

function deliveryCard(wh, ev, d, refresh) {
	const target = (wh.targets || []).find((t) => t.id === d.target_id);
	const again = target && target.active
		? button('Redeliver to this target', (e) => run(e.currentTarget, async () => {
			await api('POST', `/webhooks/${enc(wh.id)}/events/${enc(ev.id)}/redeliver`, { target_id: d.target_id });
			toast(`Redelivery to ${d.target_name || 'the target'} queued`);
			await refresh();
		}), 'small redeliver-target')
		: el('span', { class: 'muted small' }, target ? 'target disabled: enable it to redeliver' : 'target deleted');
	const results = d.results || [];
	return el('div', { class: 'delivery panel', dataset: { deliveryId: d.id, status: d.status } },
		el('div', { class: 'delivery-head' },
			el('span', { class: 'strong' }, d.target_name || (target ? target.name : 'deleted target')),
			el('span', { class: 'muted' }, d.target_type || (target ? target.type : '')),
			statusChip(d.status),
			el('span', { class: 'muted small' }, `${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
				d.next_attempt_at ? [' · next ', when(d.next_attempt_at), ' (', fmtTime(d.next_attempt_at), ')'] : null,
				' · created ', fmtTime(d.created_at)),
			el('span', { class: 'grow' }),
			again),
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

// ---------- start ----------

route();
