import { useEffect, useState } from "preact/hooks";
import { api, errorText, Page } from "../api";

interface ApiKey { id: string; name: string; role: string; created_by: string | null; expires_at: string | null; revoked_at: string | null; last_used_at: string | null; key?: string }
interface Webhook { id: string; url: string; topics: string[]; description: string | null; created_at: string }
interface Delivery { id: string; topic: string; status: string; attempts: number; created_at: string; attempt_log: { attempt: number; status: number | null; error: string | null }[] }

const TOPICS = ["campaign.started", "campaign.paused", "campaign.cancelled", "campaign.aborted", "campaign.completed",
  "gate.decided", "device.failed", "firmware.uploaded"];

/** Admin only: API keys and webhook subscriptions. */
export function Admin() {
  return (
    <>
      <h1>Administration</h1>
      <ApiKeys />
      <Webhooks />
    </>
  );
}

function ApiKeys() {
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [issued, setIssued] = useState<ApiKey | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => { api<ApiKey[]>("GET", "/api-keys").then(setKeys).catch((e) => setError(errorText(e))); };
  useEffect(load, []);
  const issue = async (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.target as HTMLFormElement);
    const expires = String(data.get("expires_at") ?? "");
    try {
      setIssued(await api<ApiKey>("POST", "/api-keys", { name: data.get("name"), role: data.get("role"),
        ...(expires ? { expires_at: new Date(expires).toISOString() } : {}) }));
      setError(null);
      load();
    } catch (err) { setError(errorText(err)); }
  };
  const revoke = async (id: string) => {
    try { await api("DELETE", `/api-keys/${id}`); load(); } catch (err) { setError(errorText(err)); }
  };
  return (
    <section class="panel">
      <h2>API keys</h2>
      <form class="fields" onSubmit={issue} aria-label="Issue an API key">
        <label>Key name <input name="name" required maxLength={100} /></label>
        <label>Role
          <select name="role">{["viewer", "operator", "approver", "auditor", "admin"].map((r) => <option key={r} value={r}>{r}</option>)}</select>
        </label>
        <label>Expires (optional) <input name="expires_at" type="datetime-local" /></label>
        <button type="submit">Issue key</button>
      </form>
      {issued?.key && <p role="status">Key for {issued.name} (shown once): <code data-testid="issued-key">{issued.key}</code></p>}
      {error && <p role="alert" class="error">{error}</p>}
      <table>
        <thead><tr><th>Name</th><th>Role</th><th>Issued by</th><th>Last used</th><th>State</th><th></th></tr></thead>
        <tbody>{keys.map((k) => (
          <tr key={k.id}><td>{k.name}</td><td>{k.role}</td><td>{k.created_by ?? ""}</td>
            <td>{k.last_used_at ? new Date(k.last_used_at).toLocaleString() : ""}</td>
            <td>{k.revoked_at ? "revoked" : k.expires_at && new Date(k.expires_at) < new Date() ? "expired" : "active"}</td>
            <td>{!k.revoked_at && <button type="button" onClick={() => revoke(k.id)} aria-label={`Revoke ${k.name}`}>Revoke</button>}</td></tr>
        ))}</tbody>
      </table>
    </section>
  );
}

function Webhooks() {
  const [hooks, setHooks] = useState<Webhook[]>([]);
  const [secret, setSecret] = useState<string | null>(null);
  const [log, setLog] = useState<{ hook: string; items: Delivery[] } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => { api<Page<Webhook>>("GET", "/webhooks?page_size=100").then((p) => setHooks(p.items)).catch((e) => setError(errorText(e))); };
  useEffect(load, []);
  const create = async (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.target as HTMLFormElement);
    try {
      const created = await api<Webhook & { secret: string }>("POST", "/webhooks",
        { url: data.get("url"), topics: data.getAll("topics"), description: data.get("description") || undefined });
      setSecret(created.secret);
      setError(null);
      load();
    } catch (err) { setError(errorText(err)); }
  };
  const showLog = async (id: string) => {
    try { setLog({ hook: id, items: (await api<Page<Delivery>>("GET", `/webhooks/${id}/deliveries?page_size=50`)).items }); }
    catch (err) { setError(errorText(err)); }
  };
  const test = async (id: string) => {
    try { await api("POST", `/webhooks/${id}/test`); await showLog(id); } catch (err) { setError(errorText(err)); }
  };
  const remove = async (id: string) => {
    try { await api("DELETE", `/webhooks/${id}`); load(); } catch (err) { setError(errorText(err)); }
  };
  return (
    <section class="panel">
      <h2>Webhooks</h2>
      <form onSubmit={create} aria-label="Subscribe a webhook">
        <div class="fields">
          <label>Receiver URL <input name="url" type="url" required /></label>
          <label>Description <input name="description" maxLength={500} /></label>
        </div>
        <fieldset><legend>Topics</legend>
          {TOPICS.map((t) => <label key={t} class="inline"><input type="checkbox" name="topics" value={t} /> {t}</label>)}
        </fieldset>
        <button type="submit">Subscribe</button>
      </form>
      {secret && <p role="status">Signing secret (shown once): <code>{secret}</code></p>}
      {error && <p role="alert" class="error">{error}</p>}
      <table>
        <thead><tr><th>URL</th><th>Topics</th><th>Description</th><th></th></tr></thead>
        <tbody>{hooks.map((h) => (
          <tr key={h.id}><td>{h.url}</td><td>{h.topics.join(", ")}</td><td>{h.description ?? ""}</td>
            <td>
              <button type="button" onClick={() => test(h.id)}>Send a test</button>
              <button type="button" onClick={() => showLog(h.id)}>Deliveries</button>
              <button type="button" onClick={() => remove(h.id)}>Delete</button>
            </td></tr>
        ))}</tbody>
      </table>
      {log && (
        <table aria-label="Deliveries">
          <thead><tr><th>Topic</th><th>Status</th><th>Attempts</th><th>Last answer</th><th>Queued</th></tr></thead>
          <tbody>{log.items.map((d) => {
            const last = d.attempt_log[d.attempt_log.length - 1];
            return <tr key={d.id}><td>{d.topic}</td><td>{d.status}</td><td>{d.attempts}</td>
              <td>{last ? (last.status ?? last.error ?? "") : ""}</td><td>{new Date(d.created_at).toLocaleString()}</td></tr>;
          })}</tbody>
        </table>
      )}
    </section>
  );
}
