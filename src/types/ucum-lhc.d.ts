// @lhncbc/ucum-lhc ships no type declarations; src/indexing/ucum.ts types what it uses.
declare module '@lhncbc/ucum-lhc' {
  const ucum: { UcumLhcUtils: { getInstance(): never } };
  export default ucum;
}
