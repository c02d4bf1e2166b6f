import { useEffect, useState } from "preact/hooks";
import { api, Campaign, errorText, Page } from "../api";

interface CampaignAt {
  at: string;
  name: string;
  status: string;
  waves: { wave: number; size: number; assigned: number; states: Record<string, number> }[];
  events: { global_seq: number; event_type: string; recorded_at: string; actor: string | null }[];
}

interface Verification { ok?: boolean; events?: number; [key: string]: unknown }

/** A campaign at any past moment, chosen on a slider, and the chain's verdict. */
export function Audit() {
  const [campaigns, setCampaigns] = useState<Campaign[]>([]);
  const [chosen, setChosen] = useState<Campaign | null>(null);
  const [offset, setOffset] = useState(100);
  const [at, setAt] = useState<CampaignAt | null>(null);
  const [chain, setChain] = useState<Verification | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api<Page<Campaign>>("GET", "/campaigns?page_size=100").then((p) => setCampaigns(p.items)).catch((e) => setError(errorText(e)));
    api<Verification>("GET", "/audit/verify").then(setChain).catch((e) => setError(errorText(e)));
  }, []);
  const moment = (c: Campaign, percent: number) => {
    const from = new Date(c.created_at).getTime();
    const to = c.ended_at ? new Date(c.ended_at).getTime() + 1000 : Date.now();
    return new Date(from + ((to - from) * percent) / 100);
  };
  useEffect(() => {
    if (!chosen) return;
    const when = moment(chosen, offset).toISOString();
    api<CampaignAt>("GET", `/audit/campaigns/${chosen.id}?at=${encodeURIComponent(when)}`)
      .then((a) => { setAt(a); setError(null); }).catch((e) => { setAt(null); setError(errorText(e)); });
  }, [chosen, offset]);
  return (
    <>
      <h1>Audit</h1>
      <p data-testid="chain">Event chain: {chain ? (chain.ok === false ? "BROKEN" : "verified") : "checking…"}</p>
      <label for="audit-campaign">Campaign</label>{" "}
      <select id="audit-campaign" onChange={(e) => {
        const id = (e.target as HTMLSelectElement).value;
        setChosen(campaigns.find((c) => c.id === id) ?? null);
      }}>
        <option value="">choose…</option>
        {campaigns.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
      </select>
      {chosen && (
        <div class="panel">
          <label for="moment">Moment: {moment(chosen, offset).toLocaleString()}</label>
          <input id="moment" type="range" min={0} max={100} value={offset}
            onInput={(e) => setOffset(Number((e.target as HTMLInputElement).value))} />
          {at && (
            <>
              <p>At that moment <strong>{at.name}</strong> was <strong data-testid="status-at">{at.status}</strong>.</p>
              <table>
                <thead><tr><th>Wave</th><th>Size</th><th>Assigned</th><th>Devices by state</th></tr></thead>
                <tbody>{at.waves.map((w) => (
                  <tr key={w.wave}><td>{w.wave + 1}</td><td>{w.size}</td><td>{w.assigned}</td>
                    <td>{Object.entries(w.states).map(([s, n]) => `${s} ${n}`).join(", ")}</td></tr>
                ))}</tbody>
              </table>
              <h2>Who ordered what, up to then</h2>
              <ol>{at.events.map((e) => <li key={e.global_seq}>{new Date(e.recorded_at).toLocaleString()} · {e.event_type} · {e.actor ?? ""}</li>)}</ol>
            </>
          )}
        </div>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      <FleetAt />
    </>
  );
}

interface Running { device_id: string; firmware_version: string; campaign_id?: string | null }
interface DeviceAt { device_id: string; running: string | null; profile: { firmware_version: string | null }; events: { global_seq: number; event_type: string; recorded_at: string; actor: string | null }[] }

/** Which firmware ran where at a moment, and one device as it was then. */
function FleetAt() {
  const [when, setWhen] = useState(() => new Date(Date.now() - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 19));
  const [fleet, setFleet] = useState<Running[] | null>(null);
  const [device, setDevice] = useState<DeviceAt | null>(null);
  const [error, setError] = useState<string | null>(null);
  const at = () => new Date(when).toISOString();
  const look = async (e: Event) => {
    e.preventDefault();
    const id = String(new FormData(e.target as HTMLFormElement).get("device") ?? "").trim();
    try {
      setFleet((await api<{ devices: Running[] }>("GET", `/audit/fleet?at=${encodeURIComponent(at())}`)).devices);
      setDevice(id ? await api<DeviceAt>("GET", `/audit/devices/${encodeURIComponent(id)}?at=${encodeURIComponent(at())}`) : null);
      setError(null);
    } catch (err) { setError(errorText(err)); }
  };
  return (
    <section class="panel">
      <h2>Which firmware ran where</h2>
      <form class="fields" onSubmit={look} aria-label="Fleet at a moment">
        <label>At <input type="datetime-local" step={1} value={when} onInput={(e) => setWhen((e.target as HTMLInputElement).value)} required /></label>
        <label>Device (optional) <input name="device" /></label>
        <button type="submit">Look</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      {device && <p data-testid="device-at">{device.device_id} ran {device.running ?? device.profile.firmware_version ?? "unknown"}, after {device.events.length} events.</p>}
      {fleet && (
        <table>
          <thead><tr><th>Device</th><th>Firmware</th><th>Got it in</th></tr></thead>
          <tbody>{fleet.map((r) => (
            <tr key={r.device_id}><td>{r.device_id}</td><td>{r.firmware_version}</td>
              <td>{r.campaign_id ? <a href={`/ui/campaigns/${r.campaign_id}`}>a campaign</a> : ""}</td></tr>
          ))}</tbody>
        </table>
      )}
    </section>
  );
}
