/** A horizontal colour ramp with its end values, for the heat maps (a <canvas>-free inline SVG gradient). */
export function ColorLegend({ colour, low, high, label }: { colour: (t: number) => string; low: string; high: string; label: string }) {
  const stops = Array.from({ length: 11 }, (_, i) => i / 10);
  const id = `ramp-${label.replace(/[^a-z0-9]/gi, '')}`;
  return (
    <svg className="color-legend" width={320} height={34} viewBox="0 0 320 34" role="img" aria-label={`colour scale: ${label} from ${low} to ${high}`}>
      <defs>
        <linearGradient id={id}>
          {stops.map((t) => (
            <stop key={t} offset={`${t * 100}%`} stopColor={colour(t)} />
          ))}
        </linearGradient>
      </defs>
      <rect x={60} y={4} width={200} height={10} fill={`url(#${id})`} />
      <text x={56} y={13} textAnchor="end">
        {low}
      </text>
      <text x={264} y={13}>
        {high}
      </text>
      <text x={160} y={29} textAnchor="middle" className="axis-label">
        {label}
      </text>
    </svg>
  );
}
