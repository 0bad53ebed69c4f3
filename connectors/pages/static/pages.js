// Progressive enhancement: the pages work without this; with it, the design system's components
// start, and a person page takes in new alerts as they arrive (server-sent events).
import { initAll } from '/static/govuk/govuk-frontend.min.js'

document.body.classList.add('govuk-frontend-supported')
initAll()

const view = document.getElementById('person-view')
if (view && window.EventSource) {
  const status = document.getElementById('live-status')
  // Reads the person's page again; replaces it, and says so, only when it has changed.
  const refresh = async () => {
    const response = await fetch(window.location.pathname + '?part=body', { headers: { Accept: 'text/html' } })
    if (!response.ok) return
    const template = document.createElement('template')
    template.innerHTML = (await response.text()).trim()
    const fresh = template.content.firstElementChild
    const shown = document.getElementById('person-view')
    if (!fresh || fresh.outerHTML === shown.outerHTML) return // both as this browser writes them
    shown.replaceWith(fresh)
    status.textContent = 'Updated at ' + new Date().toLocaleTimeString('en-GB') + ' with new information.'
  }
  const events = new EventSource(view.dataset.live)
  events.addEventListener('changed', refresh)
  // What arrived before the stream opened (or while it reconnected, or a proxy held it) is taken
  // in by reading the page again when it opens, and every 15 seconds.
  events.addEventListener('open', refresh)
  setInterval(refresh, 15000)
}
