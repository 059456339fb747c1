/**
 * Renditions of a sandbox clinical note (the plain text src/sandbox/generate.ts writes) as real
 * vendors serve them through Binary: an HTML page (Epic's and Oracle's clinical notes) and a small
 * PDF (Oracle's, where the site has Clinical Reporting). See ehr-behaviour.md §1 Epic
 * "DocumentReference / Binary" and §2 Oracle "Binary / notes". Both are deterministic: the same
 * text gives the same bytes.
 */

const escapeHtml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * The note as an HTML document: its first line the title, each following paragraph (lines up to
 * a blank one) a `<p>`, each line of it on a line of its own.
 */
export function noteHtml(text: string): string {
  const [title = 'Clinical note', ...rest] = text.split('\n');
  const paragraphs = rest
    .join('\n')
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean);
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    `<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`,
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    ...paragraphs.map((p) => `<p>${p.split('\n').map(escapeHtml).join('<br>\n')}</p>`),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** Characters a PDF string of the standard Helvetica font shows: printable ASCII, `\`, `(` and `)` escaped. */
const pdfString = (s: string): string => `(${s.replace(/[^\x20-\x7e]/g, '?').replace(/[\\()]/g, (c) => `\\${c}`)})`;

/** Lines of at most `width` characters, broken at spaces where there are some. */
function wrap(line: string, width: number): string[] {
  const out: string[] = [];
  let rest = line;
  while (rest.length > width) {
    const cut = rest.lastIndexOf(' ', width);
    const at = cut > 0 ? cut : width;
    out.push(rest.slice(0, at));
    rest = rest.slice(at).trimStart();
  }
  out.push(rest);
  return out;
}

/**
 * The note as a one-page PDF 1.4 (US Letter, Helvetica 10 pt, as many lines as fit): a real file
 * that PDF readers open, with its cross-reference table at the byte offsets it names.
 * See: ISO 32000-1, 7.5 (file structure).
 */
export function notePdf(text: string): Buffer {
  const lines = text
    .split('\n')
    .flatMap((l) => wrap(l, 95))
    .slice(0, 60);
  const content = ['BT', '/F1 10 Tf', '12 TL', '54 740 Td', ...lines.map((l) => `${pdfString(l)} Tj T*`), 'ET'].join('\n');
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>',
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>',
    `<< /Length ${Buffer.byteLength(content, 'latin1')} >>\nstream\n${content}\nendstream`,
  ];
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) out += `${String(offset).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}
