/**
 * The Normalizer contract: a pure, total function from one raw provider record to
 * normalized records. Bad fields become an `ItemError`, never an exception, and an
 * `ItemError` never carries the offending value (health data stays out of logs and bodies).
 */
import { Data, Either, ParseResult, Schema } from "effect"
import type { SampleOf, SummaryFields, SummaryResource, TimeseriesBatch, TimeseriesResource } from "./schema.ts"

export type SummaryRecord = {
  readonly [R in SummaryResource]: {
    readonly kind: "summary"
    readonly resource: R
    /** The provider's own id for this record (its source id). */
    readonly sourceId: string
    readonly data: SummaryFields[R]
  }
}[SummaryResource]

/** Samples of one timeseries resource, typed by that resource's sample shape. */
export type TimeseriesRecord = {
  readonly [R in TimeseriesResource]: {
    readonly kind: "timeseries"
    readonly resource: R
    /** The provider record the samples came from; one batch per source record and resource. */
    readonly sourceId: string
    readonly data: TimeseriesBatch<SampleOf<R>>
  }
}[TimeseriesResource]

export type NormalizedRecord = SummaryRecord | TimeseriesRecord

/** A record that could not be normalized. `message` names fields, never values. */
export class ItemError extends Data.TaggedError("ItemError")<{
  readonly message: string
}> {}

export type Normalizer = (raw: unknown) => Either.Either<ReadonlyArray<NormalizedRecord>, ItemError>

const issueText: Record<ParseResult.ArrayFormatterIssue["_tag"], string> = {
  Missing: "is missing",
  Unexpected: "is not allowed",
  Forbidden: "cannot be checked",
  Type: "has the wrong type",
  Refinement: "is out of range or malformed",
  Transformation: "cannot be converted",
  Pointer: "is invalid",
  Composite: "is invalid"
}

/** Describes schema issues by paths and kinds of problem only, never by the values seen. */
export const describeIssues = (issues: ReadonlyArray<Pick<ParseResult.ArrayFormatterIssue, "_tag" | "path">>, root = "record"): string =>
  issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length === 0 ? root : issue.path.join(".")} ${issueText[issue._tag] ?? "is invalid"}`)
    .join("; ")

export const describeParseError = (error: ParseResult.ParseError): string =>
  describeIssues(ParseResult.ArrayFormatter.formatErrorSync(error))

/** Decodes one raw record with `schema`, turning failures into a value-free `ItemError`. */
export const decodeRecord = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "ignore" })
  return (raw: unknown): Either.Either<A, ItemError> =>
    Either.mapLeft(decode(raw), (error) => new ItemError({ message: describeParseError(error) }))
}
