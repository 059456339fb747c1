/**
 * The health-system picker a person sees at `/connect`: a labelled search box, results as they
 * type (name, city and state, vendor, status), each a link to the system's connect URL. Plain HTML
 * and a small script of our own (no framework); readable on a phone, usable with the keyboard
 * (Tab through the results, Enter to choose).
 */
import { escapeHtml as esc } from '../src/html.ts';

const STYLE = `body{font:16px/1.4 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#111}
label{display:block;font-weight:600;margin-bottom:.3rem}input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1.1rem}
ul{list-style:none;padding:0}li a{display:block;padding:.6rem;border-bottom:1px solid #ddd;color:inherit;text-decoration:none}
li a:hover,li a:focus{background:#eef4ff;outline:2px solid #3366cc}.meta{color:#555;font-size:.9rem}.error{color:#a00}`;

export function pickerPage(appName: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect your health records</title><style>${STYLE}</style></head><body>
<h1>Connect your health records</h1>
<p>${esc(appName)} asks to read your records. Find the hospital or clinic you use, then sign in there.</p>
<label for="q">Hospital, clinic or city</label>
<input id="q" name="q" type="search" autocomplete="off" autofocus placeholder="e.g. Mayo Clinic, Rochester" aria-describedby="count">
<p id="count" role="status" aria-live="polite"></p>
<ul id="results"></ul>
<script src="/connect/picker.js"></script>
</body></html>`;
}

export function pickerError(message: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect your health records</title><style>${STYLE}</style></head><body><h1>Connect your health records</h1><p class="error">${esc(message)}</p></body></html>`;
}

/** The page's script: searches as the person types (150 ms after the last key), newest answer wins. */
export const PICKER_JS = `'use strict';
(function () {
  var params = new URLSearchParams(location.search);
  var clientId = params.get('client_id') || '';
  var token = params.get('access_token') || '';
  var input = document.getElementById('q');
  var list = document.getElementById('results');
  var count = document.getElementById('count');
  var timer = null;
  var asked = 0;
  function place(s) {
    var a = (s.locations[0] || {}).address || {};
    return [a.city, a.state].filter(Boolean).join(', ');
  }
  function render(systems) {
    list.textContent = '';
    systems.forEach(function (s) {
      var li = document.createElement('li');
      var a = document.createElement('a');
      a.href = '/connect/system/clinical/' + encodeURIComponent(s.id) + '?client_id=' + encodeURIComponent(clientId) + '&access_token=' + encodeURIComponent(token);
      var name = document.createElement('strong');
      name.textContent = s.name;
      var meta = document.createElement('div');
      meta.className = 'meta';
      meta.textContent = [place(s), s.ehr, s.status === 'unknown' ? '' : s.status.replace(/_/g, ' ')].filter(Boolean).join(' · ');
      a.appendChild(name);
      a.appendChild(meta);
      li.appendChild(a);
      list.appendChild(li);
    });
    count.textContent = systems.length ? systems.length + (systems.length === 20 ? '+' : '') + ' found' : 'Nothing found; try another name or a city.';
  }
  function search() {
    var q = input.value.trim();
    if (!q) { list.textContent = ''; count.textContent = ''; return; }
    var mine = ++asked;
    fetch('/connect/systems?query=' + encodeURIComponent(q), { headers: { authorization: 'Bearer ' + token } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (systems) { if (mine === asked) render(systems); })
      .catch(function () { if (mine === asked) count.textContent = 'The search did not answer; try again.'; });
  }
  input.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(search, 150); });
})();
`;
