// ImageFile.swift — reading an image file a user names.
import FileIO
import Foundation

/// The bytes of an image file, read only when it is a regular file (FileIO's `RegularFile`); any failure is
/// `ImagingError.unreadable`, naming the path, so callers report one kind of error for "could not get the bytes".
public enum ImageFile {
    public static func read(_ url: URL) throws -> Data {
        do {
            return try RegularFile.read(url)
        } catch {
            throw ImagingError.unreadable(source: url.path, reason: error.localizedDescription)
        }
    }
}
