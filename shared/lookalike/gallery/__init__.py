"""The celebrity gallery: import from folders, store on disk, search by face."""

from lookalike.gallery.index import GalleryIndex, Match, SearchResult
from lookalike.gallery.importer import ImportReport, import_folder
from lookalike.gallery.similarity import similarity_from_distance, similarity_from_inner
from lookalike.gallery.store import Gallery, GalleryPhoto, Person

__all__ = ["Gallery", "GalleryIndex", "GalleryPhoto", "ImportReport", "Match", "Person",
           "SearchResult", "import_folder", "similarity_from_distance", "similarity_from_inner"]
