// Parley's browser client: IRC over WebSocket (IRCv3 binding, subprotocol text.ircv3.net, one
// line per frame). A message shows as sent once the server echoes it (echo-message): that echo
// means it is stored. Missed messages are fetched with CHATHISTORY, on join, on reconnect, and
// whenever a msgid's sequence number shows a gap.

const CAPS = ['message-tags', 'server-time', 'echo-message', 'batch', 'labeled-response', 'draft/chathistory'];
const $ = (id) => document.getElementById(id);

// ---- IRC line codec (the subset a client needs) -------------------------------------------

const UNESCAPE = { ':': ';', s: ' ', '\\': '\\', r: '\r', n: '\n' };
function unescapeTag(v) {
  return v.replace(/\\(.?)/g, (_, c) => (c in UNESCAPE ? UNESCAPE[c] : c));
}

export function parse(line) {
  const msg = { tags: {}, source: '', command: '', params: [] };
  let i = 0;
  if (line[0] === '@') {
    const sp = line.indexOf(' ');
    for (const t of line.slice(1, sp).split(';')) {
      const eq = t.indexOf('=');
      if (eq < 0) msg.tags[t] = '';
      else msg.tags[t.slice(0, eq)] = unescapeTag(t.slice(eq + 1));
    }
    i = sp + 1;
    while (line[i] === ' ') i++;
  }
  if (line[i] === ':') {
    const sp = line.indexOf(' ', i);
    msg.source = line.slice(i + 1, sp);
    i = sp + 1;
    while (line[i] === ' ') i++;
  }
  const rest = line.slice(i);
  const trailing = rest.indexOf(' :');
  const head = trailing >= 0 ? rest.slice(0, trailing) : rest;
  const parts = head.split(' ').filter(Boolean);
  msg.command = (parts.shift() || '').toUpperCase();
  msg.params = parts;
  if (trailing >= 0) msg.params.push(rest.slice(trailing + 2));
  return msg;
}

const nickOf = (source) => source.split('!')[0];
const seqOf = (msgid) => {
  const m = /-(\d+)$/.exec(msgid || '');
  return m && !msgid.startsWith('e-') ? Number(m[1]) : null;
};

// ---- state ----------------------------------------------------------------------------------

const state = {
  ws: null,
  nick: '',
  registered: false,
  wantClose: false,
  backoff: 1000,
  labels: 0,
  current: null,
  /** lower-case name -> { name, topic, members: Map(nick -> op), items: [], seen: Set, lastSeq, lastMsgid, unread } */
  channels: new Map(),
};

function channel(name) {
  const key = name.toLowerCase();
  let c = state.channels.get(key);
  if (!c) {
    c = { name, topic: '', members: new Map(), items: [], seen: new Set(), lastSeq: 0, lastMsgid: '', unread: 0, names: null };
    state.channels.set(key, c);
  }
  return c;
}

function send(line) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(line);
}

function setStatus(text, online) {
  $('status').textContent = text;
  $('status').classList.toggle('online', online);
}

// ---- connection -----------------------------------------------------------------------------

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  const ws = new WebSocket(url, 'text.ircv3.net');
  state.ws = ws;
  state.registered = false;
  setStatus('connecting', false);
  ws.onopen = () => {
    send('CAP LS 302');
    send(`NICK ${state.nick}`);
    send(`USER ${state.nick} 0 * :Parley web`);
  };
  ws.onmessage = (ev) => {
    for (const line of String(ev.data).split(/\r?\n/)) if (line) handle(parse(line));
  };
  ws.onclose = () => {
    state.ws = null;
    if (state.wantClose) return;
    setStatus('reconnecting', false);
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 10000);
  };
}

function handle(m) {
  const p = m.params;
  switch (m.command) {
    case 'PING':
      return send(`PONG :${p[0] || ''}`);
    case 'CAP':
      if (p[1] === 'LS') {
        const offered = new Set((p[p.length - 1] || '').split(' ').map((c) => c.split('=')[0]));
        const want = CAPS.filter((c) => offered.has(c));
        if (want.length) send(`CAP REQ :${want.join(' ')}`);
        else send('CAP END');
      } else if (p[1] === 'ACK' || p[1] === 'NAK') send('CAP END');
      return;
    case '001':
      state.registered = true;
      state.nick = p[0];
      state.backoff = 1000;
      setStatus(`online as ${state.nick}`, true);
      $('login').hidden = true;
      $('chat').hidden = false;
      for (const c of state.channels.values()) if (c.name.startsWith('#')) send(`JOIN ${c.name}`);
      return;
    case '433':
    case '432':
      if (!state.registered) {
        $('login-error').textContent = p[p.length - 1] + (p[1] ? `: ${p[1]}` : '');
        state.wantClose = true;
        state.ws?.close();
        $('login').hidden = false;
        $('chat').hidden = true;
      }
      return;
    case 'JOIN': {
      const c = channel(p[0]);
      const who = nickOf(m.source);
      if (who === state.nick) {
        c.members.clear();
        // Resume where we left off, or load the recent past.
        send(c.lastMsgid ? `CHATHISTORY AFTER ${c.name} msgid=${c.lastMsgid} 1000` : `CHATHISTORY LATEST ${c.name} * 100`);
        if (!state.current) select(c.name.toLowerCase());
      } else {
        c.members.set(who, false);
        event(c, `${who} joined`, m);
      }
      return render();
    }
    case 'PART':
    case 'KICK': {
      const c = channel(p[0]);
      const who = m.command === 'KICK' ? p[1] : nickOf(m.source);
      c.members.delete(who);
      event(c, m.command === 'KICK' ? `${who} was kicked by ${nickOf(m.source)} (${p[2] || ''})` : `${who} left`, m);
      if (who === state.nick) {
        state.channels.delete(p[0].toLowerCase());
        if (state.current === p[0].toLowerCase()) state.current = state.channels.keys().next().value || null;
      }
      return render();
    }
    case 'QUIT': {
      const who = nickOf(m.source);
      for (const c of state.channels.values()) {
        if (c.members.delete(who)) event(c, `${who} quit (${p[0] || ''})`, m);
      }
      return render();
    }
    case 'NICK': {
      const who = nickOf(m.source);
      if (who === state.nick) state.nick = p[0];
      for (const c of state.channels.values()) {
        if (c.members.has(who)) {
          c.members.set(p[0], c.members.get(who));
          c.members.delete(who);
          event(c, `${who} is now ${p[0]}`, m);
        }
      }
      return render();
    }
    case '332':
      channel(p[1]).topic = p[2] || '';
      return render();
    case 'TOPIC':
      channel(p[0]).topic = p[1] || '';
      event(channel(p[0]), `${nickOf(m.source)} set the topic: ${p[1] || ''}`, m);
      return render();
    case '353': {
      const c = channel(p[2]);
      c.names ??= new Map();
      for (const n of (p[3] || '').split(' ').filter(Boolean)) c.names.set(n.replace(/^@/, ''), n.startsWith('@'));
      return;
    }
    case '366': {
      const c = channel(p[1]);
      if (c.names) c.members = c.names;
      c.names = null;
      return render();
    }
    case 'PRIVMSG':
    case 'NOTICE':
      return message(m);
    case 'FAIL':
      return notice(`${p[0]} ${p[1]}: ${p[p.length - 1]}`);
    case 'ERROR':
      return notice(p[0] || 'connection closed');
    default:
      if (/^4\d\d$/.test(m.command)) notice(p.slice(1).join(' '));
  }
}

function message(m) {
  const target = m.params[0] || '';
  const from = nickOf(m.source);
  const name = target.startsWith('#') ? target : from === state.nick ? target : from;
  const c = channel(name);
  const id = m.tags.msgid;
  if (id && c.seen.has(id)) return;
  if (id) c.seen.add(id);
  const seq = seqOf(id);
  if (seq !== null && target.startsWith('#')) {
    // A gap: fetch what is missing (live delivery is at-most-once; history is complete).
    if (c.lastSeq && seq > c.lastSeq + 1 && !m.tags.batch) send(`CHATHISTORY AFTER ${c.name} msgid=${c.lastMsgid} ${seq - c.lastSeq - 1}`);
    if (seq > c.lastSeq) {
      c.lastSeq = seq;
      c.lastMsgid = id;
    }
  }
  const pending = m.tags.label ? c.items.findIndex((it) => it.label === m.tags.label) : -1;
  const item = { time: m.tags.time || new Date().toISOString(), from, text: m.params[1] || '', seq, notice: m.command === 'NOTICE' };
  if (pending >= 0) c.items.splice(pending, 1);
  insert(c, item);
  if (state.current !== c.name.toLowerCase()) c.unread++;
  render();
}

/** Keeps a channel's messages in sequence order (history may arrive after live messages). */
function insert(c, item) {
  let i = c.items.length;
  if (item.seq !== null) while (i > 0 && c.items[i - 1].seq !== null && c.items[i - 1].seq > item.seq) i--;
  c.items.splice(i, 0, item);
  if (c.items.length > 2000) c.items.splice(0, c.items.length - 2000);
}

function event(c, text, m) {
  c.items.push({ time: m.tags.time || new Date().toISOString(), event: text, seq: null });
}

function notice(text) {
  const c = state.current && state.channels.get(state.current);
  if (c) {
    c.items.push({ time: new Date().toISOString(), event: text, seq: null });
    render();
  } else {
    $('login-error').textContent = text;
  }
}

// ---- view -----------------------------------------------------------------------------------

function select(key) {
  state.current = key;
  const c = state.channels.get(key);
  if (c) c.unread = 0;
  render();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render() {
  const list = $('channels');
  list.replaceChildren(...[...state.channels.entries()].map(([key, c]) => {
    const li = el('li', key === state.current ? 'active' : '', c.name);
    if (c.unread) li.append(el('span', 'unread', String(c.unread)));
    li.onclick = () => select(key);
    return li;
  }));
  const c = state.current && state.channels.get(state.current);
  $('title').textContent = c ? c.name : '';
  $('topic').textContent = c ? c.topic : '';
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...(c ? c.items : []).map((it) => {
    const li = el('li', it.event ? 'event' : it.label ? 'pending' : '');
    li.append(el('span', 'time', it.time.slice(11, 19)));
    if (it.event) li.append(it.event);
    else li.append(el('span', 'nick', it.notice ? `-${it.from}-` : `<${it.from}>`), it.text);
    if (it.seq !== null && it.seq !== undefined) li.dataset.seq = String(it.seq);
    return li;
  }));
  if (atBottom) box.scrollTop = box.scrollHeight;
  $('members').replaceChildren(...(c ? [...c.members.entries()].sort() : []).map(([n, op]) => el('li', '', (op ? '@' : '') + n)));
}

// ---- forms ----------------------------------------------------------------------------------

$('login').onsubmit = (ev) => {
  ev.preventDefault();
  state.nick = $('nick').value.trim();
  const ch = $('channel').value.trim();
  $('login-error').textContent = '';
  state.channels.clear();
  if (ch) channel(ch.startsWith('#') ? ch : `#${ch}`);
  state.wantClose = false;
  connect();
};

$('join').onsubmit = (ev) => {
  ev.preventDefault();
  let name = $('join-name').value.trim();
  if (!name) return;
  if (!name.startsWith('#')) name = `#${name}`;
  channel(name);
  send(`JOIN ${name}`);
  $('join-name').value = '';
  select(name.toLowerCase());
};

$('send').onsubmit = (ev) => {
  ev.preventDefault();
  const text = $('text').value;
  const c = state.current && state.channels.get(state.current);
  if (!text.trim() || !c) return;
  for (const part of text.match(/[\s\S]{1,400}/g) || []) {
    const label = `w${++state.labels}`;
    c.items.push({ time: new Date().toISOString(), from: state.nick, text: part, seq: null, label });
    send(`@label=${label} PRIVMSG ${c.name} :${part}`);
  }
  $('text').value = '';
  render();
};
